"""``/docs`` and ``/redoc`` work offline: every file from the server itself, operations shown."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.browser import NewPage
from tests.support import BackingServices, ServiceProcess

FOREIGN = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


async def test_docs_and_redoc_render_the_operations_from_local_files(
        services: BackingServices, new_page: NewPage, artifacts: Path) -> None:
    server = ServiceProcess("all", services.env(), services.workdir / "all.log").start()
    try:
        await server.wait_ready(timeout=120)
        async with httpx.AsyncClient(base_url=server.url) as client:
            document = (await client.get("/openapi.json")).json()
            for path in ("/docs", "/redoc"):
                html = (await client.get(path)).text
                assert not FOREIGN.search(html), path  # no script, style or icon from elsewhere
        operations = sum(1 for methods in document["paths"].values() for m in methods
                         if m in {"get", "post", "put", "patch", "delete"})
        assert operations > 10

        swagger = await new_page()
        await swagger.page.goto(f"{server.url}/docs", wait_until="networkidle")
        await swagger.page.wait_for_selector(".opblock", timeout=30_000)
        shown = await swagger.page.locator(".opblock").count()
        assert shown == operations
        assert await swagger.page.locator(".opblock-summary-path",
                                          has_text="/v1/metrics/summary").count() == 1
        await swagger.page.screenshot(path=artifacts / "docs-swagger.png")
        assert swagger.hosts() == {server.url}

        redoc = await new_page()
        complaints: list[str] = []
        redoc.page.on("console", lambda message: complaints.append(message.text)
                      if message.type == "error" else None)
        redoc.page.on("pageerror", lambda error: complaints.append(str(error)))
        await redoc.page.goto(f"{server.url}/redoc", wait_until="networkidle")
        try:
            await redoc.page.wait_for_selector("[data-section-id^='operation/']",
                                               timeout=60_000)
        except Exception as exc:
            text = (await redoc.page.inner_text("body"))[:1000]
            raise AssertionError(f"ReDoc rendered no operation: {complaints} {text}") from exc
        rendered = await redoc.page.locator("[data-section-id^='operation/']").count()
        assert rendered == operations
        await redoc.page.screenshot(path=artifacts / "docs-redoc.png")
        assert redoc.hosts() == {server.url}
    finally:
        server.stop()
