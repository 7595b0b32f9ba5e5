"""The HTTP entrypoint: Starlette, exactly as shared/API.md says."""

from entrypoints.http.app import create_app, create_app_from_settings

__all__ = ["create_app", "create_app_from_settings"]
