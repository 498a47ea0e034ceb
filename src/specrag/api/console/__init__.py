"""The browser console at ``/ui``: static HTML, CSS and plain JavaScript modules shipped
inside the package (no build step, no CDN, no JavaScript dependency), talking to the same
REST API as every other client. ``mount_console(app)`` adds it; ``/`` redirects to it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

#: index.html, console.css and js/*.js (package data, so an installed wheel serves them).
STATIC_DIR = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
@router.get("/ui")
def to_console() -> RedirectResponse:
    return RedirectResponse("/ui/")


def mount_console(app: FastAPI) -> None:
    """Serve the console's files under /ui/ (index.html at /ui/)."""
    if not (STATIC_DIR / "index.html").is_file():
        raise RuntimeError(f"console files missing from {STATIC_DIR}: a broken install?")
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC_DIR, html=True), name="console")
