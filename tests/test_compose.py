"""compose.yaml: valid against the Compose Specification, and safe to start as it is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_published_ports_bind_to_loopback_by_default(compose: dict[str, Any]) -> None:
    published = [(name, port) for name, service in compose["services"].items()
                 for port in service.get("ports", [])]
    assert published
    for name, port in published:
        address = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(port)).rsplit(":", 2)[0]
        assert address == "127.0.0.1", f"{name} publishes {port} on every interface"


def test_images_are_pinned_to_exact_versions(compose: dict[str, Any]) -> None:
    images = {service["image"] for service in compose["services"].values()}
    base = re.search(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert base is not None
    for image in {*images, base.group(1)}:
        tag = image.rsplit(":", 1)[1] if ":" in image else "latest"
        assert "@sha256:" in image or re.match(r"\d+\.\d+(\.\d+)?(-[a-z0-9.-]+)?$", tag), (
            f"{image} floats: pin an exact version")


def test_no_password_is_written_in_the_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            assert not re.search(r"PASSWORD$|SECRET$|TOKEN$", key), f"{name}: {key} inline"
            assert not re.search(r"://[^/@:]+:[^/@]+@", str(value)), f"{name}: {key} has a password"
    secrets = compose.get("secrets", {})
    assert {"postgres_password", "aduan_database_url"} <= secrets.keys()
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == (
        "/run/secrets/postgres_password")
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for secret in secrets.values():
        assert Path(secret["file"]).parts[0] + "/" in ignored, "secret files must stay out of git"


def test_kafka_keeps_its_data_on_the_volume(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    mounts = {volume.split(":", 1)[1] for volume in kafka["volumes"]}
    assert kafka["environment"]["KAFKA_LOG_DIRS"] in mounts
