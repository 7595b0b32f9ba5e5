"""The HTTP entrypoint: a Starlette app made from one table of endpoints."""

from entrypoints.http.app import create_app

__all__ = ["create_app"]
