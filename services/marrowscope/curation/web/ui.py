"""The experts' web UI (static files that use only this API) and the health check."""

from importlib import resources
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

UI_DIR = resources.files("marrowscope.curation") / "ui"
router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/ui/")
async def ui_index() -> FileResponse:
    return FileResponse(str(UI_DIR / "index.html"), headers={"Cache-Control": "no-cache"})


@router.get("/ui/{name}")
async def ui_file(name: Literal["app.js", "app.css"]) -> FileResponse:
    return FileResponse(str(UI_DIR / name), headers={"Cache-Control": "no-cache"})


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
