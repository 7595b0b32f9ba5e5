"""The web pages: the customer's app at ``/``, the operator's page at ``/ops``, and their
scripts and style under ``/web/``, served from the package by the same process, with no build
step and nothing fetched from elsewhere."""

from __future__ import annotations

import functools
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from concert_domain.errors import NotFound

FILES = Path(__file__).with_name("web")
ASSETS = {
    "style.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "ops.js": "text/javascript; charset=utf-8",
}
HTML = "text/html; charset=utf-8"


@functools.cache
def page(name: str) -> bytes:
    """A file of the web app, read once."""
    return (FILES / name).read_bytes()


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        raise NotFound(f"no file {name!r}")
    return Response(page(name), media_type=ASSETS[name])
