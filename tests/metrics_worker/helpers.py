"""Building a history through the public API, back-dated by an admin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.support import bearer, complaint, eventually


@dataclass
class Importer:
    client: httpx.AsyncClient
    admin: str

    async def receive(self, at: str, **overrides: Any) -> str:
        body = complaint(received_at=at, incident_date=None, **overrides)
        if body["kind"] == "own_initiative":
            body["reporter"] = None
        response = await self.client.post("/v1/complaints", json=body,
                                          headers=bearer(self.admin))
        assert response.status_code == 201, response.text
        complaint_id: str = response.json()["id"]
        return complaint_id

    async def opened(self, *case_ids: str) -> None:
        async def check() -> None:
            for case_id in case_ids:
                response = await self.client.get(f"/v1/cases/{case_id}",
                                                 headers=bearer(self.admin))
                assert response.status_code == 200, case_id

        await eventually(check, timeout=30)

    async def act(self, case_id: str, action: str, at: str, **fields: Any) -> dict[str, Any]:
        response = await self.client.post(
            f"/v1/cases/{case_id}/transitions",
            json={"action": action, "effective_at": at, **fields}, headers=bearer(self.admin))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def summary(self, **params: str) -> dict[str, Any]:
        response = await self.client.get("/v1/metrics/summary", params=params,
                                         headers=bearer(self.admin))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def settled(self, expected_contacts: int, expected_transitions: int) -> None:
        """Waits until the metrics read model has applied everything sent so far."""
        async def check() -> None:
            everything = await self.summary(**{"from": "1990-01-01", "to": "2035-12-31"})
            assert everything["contacts"] == expected_contacts
            assert await _transition_count(self) == expected_transitions

        await eventually(check, timeout=30)


async def _transition_count(importer: Importer) -> int:
    from sqlalchemy import text

    app = importer.client.app  # type: ignore[attr-defined]
    async with app.state.database.transaction() as session:
        count = (await session.execute(text("SELECT count(*) FROM metrics.transitions"))).scalar()
    return int(count or 0)
