"""Every answer the HTTP tests receive, checked against the service's own `/openapi.json`:
its status must be documented for that operation and its body must match the schema
documented for that status. So the code and the document cannot drift apart."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from entrypoints.http.routes import document

API_MD = Path(__file__).resolve().parents[2] / "shared" / "API.md"
_METHODS = "GET|POST|PUT|PATCH|DELETE"


class ResponseSchemas:
    def __init__(self, openapi: dict[str, Any]) -> None:
        self._document = openapi
        self._operations: list[tuple[str, re.Pattern[str], dict[str, Any]]] = []
        for path, operations in openapi["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
            for method, operation in operations.items():
                self._operations.append((method.upper(), pattern, operation))

    def check(self, method: str, path: str, status: int, media_type: str, body: bytes) -> None:
        operation = self._operation(method, path)
        if operation is None:  # a path or method no route has: the error body all the same
            assert status in (404, 405), (method, path, status)
            self._validate(json.loads(body), {"$ref": "#/components/schemas/Error"})
            return
        documented = operation["responses"]
        assert str(status) in documented, f"{method} {path} answered {status}, not documented"
        content = documented[str(status)]["content"]
        kind = media_type.split(";")[0].strip()
        assert kind in {k.split(";")[0] for k in content}, f"{method} {path} answered {kind}"
        if kind == "application/json":
            self._validate(json.loads(body), content["application/json"]["schema"])

    def _operation(self, method: str, path: str) -> dict[str, Any] | None:
        for known, pattern, operation in self._operations:
            if known == method and pattern.match(path):
                return operation
        return None

    def _validate(self, body: Any, shape: dict[str, Any]) -> None:
        schema = {**shape, "components": self._document["components"]}
        jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


SCHEMAS = ResponseSchemas(document())


async def check_response(response: httpx.Response) -> None:
    """An httpx response hook: fails the test on an answer the document does not describe."""
    await response.aread()
    request = response.request
    media_type = response.headers.get("content-type", "")
    SCHEMAS.check(
        request.method, request.url.path, response.status_code, media_type, response.content
    )


def validated_client(
    transport: httpx.AsyncBaseTransport, base_url: str, *, timeout: float = 5
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport,
        base_url=base_url,
        timeout=timeout,
        event_hooks={"response": [check_response]},
    )


def contract_operations() -> set[tuple[str, str]]:
    """Every method and path the rows of `../shared/API.md` name, path ids as ``{}``."""
    text = API_MD.read_text()
    named = set(re.findall(rf"`({_METHODS}) (/[^`\s?]*)", text))
    for first, second, path in re.findall(rf"`({_METHODS})` / `({_METHODS}) (/[^`\s?]*)`", text):
        named.update({(first, path), (second, path)})
    return {(method, canonical(path)) for method, path in named}


def canonical(path: str) -> str:
    return "/".join("{}" if part.startswith("{") else part for part in path.split("/"))
