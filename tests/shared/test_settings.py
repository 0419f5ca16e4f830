import subprocess
import sys

import pytest
from pydantic import ValidationError

from shared.settings import Settings, describe_error


def test_bad_timezone_names_the_variable() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(timezone="Mars/Olympus")
    assert describe_error(caught.value).startswith("ADUAN_TIMEZONE:")


def test_plain_postgresql_url_is_made_async() -> None:
    settings = Settings(database_url="postgresql://u@localhost/aduan")
    assert settings.database_url == "postgresql+asyncpg://u@localhost/aduan"


@pytest.mark.parametrize(("variable", "value"), [
    ("ADUAN_DATABASE_URL", "mysql://nope"),
    ("ADUAN_DATABASE_LISTEN", "999.1.1.1"),  # pasted into pg_ctl's options once
])
def test_a_bad_value_stops_start_up_with_one_line_naming_it(variable: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "migrate"],
        env={variable: value, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"aduan: bad configuration: {variable}:"), lines
    assert value in lines[0]


def test_a_misspelt_variable_is_reported_at_start_up() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "report", "--period", "2022-13"],
        env={"ADUAN_DATABSE_URL": "postgresql://u@db/aduan", "ADUAN_TIMEZONE": "Asia/Jakarta",
             "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert ("aduan: unknown setting ADUAN_DATABSE_URL is ignored "
            "(did you mean ADUAN_DATABASE_URL?)") in result.stderr.splitlines()
    assert "ADUAN_TIMEZONE" not in result.stderr


@pytest.mark.parametrize("value", ["999.1.1.1", "127.0.0.1,", ",", " , ", "::g", "db host",
                                   "-db.example.id", "127.0.0.1\" -c ssl=on \"",
                                   "bi.example.id,300.0.0.1"])
def test_a_bad_listen_address_names_the_variable(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(database_listen=value)
    line = describe_error(caught.value)
    assert line.startswith("ADUAN_DATABASE_LISTEN:"), line
    assert "\n" not in line


@pytest.mark.parametrize(("value", "kept"), [
    ("127.0.0.1", "127.0.0.1"), ("*", "*"), ("0.0.0.0", "0.0.0.0"), ("::1", "::1"),
    ("localhost", "localhost"), (" 127.0.0.1 , ::1 ", "127.0.0.1,::1"),
    ("bi-gateway.ombudsman.go.id", "bi-gateway.ombudsman.go.id"), ("10.0.0.7,db", "10.0.0.7,db"),
    ("", ""), ("  ", ""),  # no TCP listener (docs/bi.md)
])
def test_listen_takes_what_postgresql_takes(value: str, kept: str) -> None:
    assert Settings(database_listen=value).database_listen == kept


def test_a_topic_prefix_kafka_cannot_name_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(topic_prefix="staging aduan/")
    assert describe_error(caught.value).startswith("ADUAN_TOPIC_PREFIX:")
    assert Settings(topic_prefix="staging.aduan-1_").topic("x") == "staging.aduan-1_x"
