"""No spelling of a credential in a query string reaches the access log (INTEGRATIONS.md: the
``api_key`` "is redacted from every log line and trace")."""

from __future__ import annotations

import pytest

from shared.access_log import redacted_query

TOKEN = "adu_" + "Zk3" * 14


@pytest.mark.parametrize("query", [
    f"api_key={TOKEN}", f"API_KEY={TOKEN}", f"api_key%3D{TOKEN}", f"api_key%253D{TOKEN}",
    f"api%5Fkey={TOKEN}", f"api_key%20={TOKEN}", f"api_key[]={TOKEN}", f"api_key%00={TOKEN}",
    f"token={TOKEN}", f"access_token={TOKEN}&page=2", f"x=1&api_key%3D{TOKEN}%26y%3D2",
    f"q={TOKEN}", f"q=%61du_{TOKEN[4:]}", f"{TOKEN}", f"key%3D{TOKEN}",
])
def test_no_spelling_of_a_credential_reaches_the_log(query: str) -> None:
    logged = redacted_query(query.encode())
    assert TOKEN[4:] not in logged, logged
    assert "REDACTED" in logged, logged


def test_other_parameters_are_kept_as_sent() -> None:
    assert redacted_query(b"status=open&limit=20&cursor=a%2Fb") == \
        "status=open&limit=20&cursor=a/b"
    assert redacted_query(f"api_key={TOKEN}&page=2".encode()) == "api_key=REDACTED&page=2"
