"""``/docs`` (Swagger UI) and ``/redoc`` from files served here: they work without internet.

The files under ``shared/static/`` are unmodified copies of ``swagger-ui-dist`` and ReDoc's
standalone bundle (versions and licences beside them). Swagger UI's online validator is off,
and ReDoc's web fonts are not loaded, so a page asks no other host for anything.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")
ASSETS = "/assets"
# The browser itself holds the pages to this server: nothing is fetched from another host.
# Swagger UI starts from an inline script and ReDoc renders from blob workers and inline styles.
POLICY = {"Content-Security-Policy": (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:; "
    "frame-ancestors 'self'")}


def install_docs(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _held(get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title}: API docs",
            swagger_js_url=f"{ASSETS}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None, "tryItOutEnabled": False,
                                   "persistAuthorization": True}))

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _held(get_redoc_html(
            openapi_url="/openapi.json", title=f"{app.title}: API reference",
            redoc_js_url=f"{ASSETS}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False))


def _held(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(POLICY)
    return page
