"""The status page in a real browser with JavaScript switched off: the form alone answers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tests.support import BackingServices, ServiceProcess, bearer, complaint

if TYPE_CHECKING:
    from playwright.async_api import Browser


async def test_a_complainant_reads_the_status_without_javascript(
        services: BackingServices, browser: Browser, artifacts: Path) -> None:
    partner = await services.token("partner")
    server = ServiceProcess("all", services.env(), services.workdir / "all.log").start()
    try:
        await server.wait_ready(timeout=120)
        async with httpx.AsyncClient(base_url=server.url) as client:
            created = (await client.post("/v1/complaints", json=complaint(),
                                         headers=bearer(partner))).json()
        context = await browser.new_context(java_script_enabled=False,
                                            viewport={"width": 420, "height": 900})
        hosts: set[str] = set()
        try:
            page = await context.new_page()
            page.on("request", lambda request: hosts.add(request.url.split("/status")[0]))
            await page.goto(f"{server.url}/status")
            assert await page.locator("html").get_attribute("lang") == "id"
            await page.fill("#tracking_number", created["tracking_number"])
            await page.fill("#access_code", created["access_code"].lower().replace("-", ""))
            await page.click("button[type=submit]")
            await page.wait_for_selector("#answer")
            answer = await page.inner_text("#answer")
            assert created["tracking_number"] in answer
            assert "Diterima / Received" in answer or "Terdaftar / Registered" in answer
            await page.screenshot(path=artifacts / "status-page.png", full_page=True)

            await page.fill("#tracking_number", created["tracking_number"])
            await page.fill("#access_code", "ABCD-EFGH-JKMN")
            await page.click("button[type=submit]")
            notice = await page.inner_text("#notice")
            assert "tidak cocok" in notice
            assert "does not match" in notice
            assert hosts == {server.url}
        finally:
            await context.close()
    finally:
        server.stop()
