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


def test_bad_value_stops_start_up_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "migrate"],
        env={"ADUAN_DATABASE_URL": "mysql://nope", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "ADUAN_DATABASE_URL" in lines[0]


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
