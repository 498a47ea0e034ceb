"""``/docs`` without the internet: Swagger UI's files are shipped in the package
(``static/``: swagger-ui-dist 5.36.0 from npm, Apache-2.0, its LICENSE and NOTICE beside
them) and served from ``/docs/assets/``, instead of FastAPI's default CDN links. The
validator badge (which calls validator.swagger.io) is off; ReDoc (CDN only) is not served.
To update: ``npm pack swagger-ui-dist@5`` and copy the same five files."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
SWAGGER_UI_VERSION = "5.36.0"
ASSETS = "/docs/assets"


def mount_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs from the package's own files (the app must be created
    with ``docs_url=None, redoc_url=None``)."""
    if not (STATIC_DIR / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"Swagger UI files missing from {STATIC_DIR}: a broken install?")
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=root + oauth2_redirect,
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.mount(ASSETS, StaticFiles(directory=STATIC_DIR), name="swagger-ui")
