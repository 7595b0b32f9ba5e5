"""Helpers for the HTTP tests: a client on the app over in-memory services, and a customer who
signs up, logs in and queues over HTTP."""

from __future__ import annotations

from typing import Any

import attrs
import httpx

PASSWORD = "correct horse battery"


@attrs.frozen
class Caller:
    client: httpx.AsyncClient
    token: str
    queue_token: str | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def queued(self) -> dict[str, str]:
        assert self.queue_token is not None
        return {**self.auth, "X-Queue-Token": self.queue_token}

    async def get(self, path: str, **headers: str) -> httpx.Response:
        return await self.client.get(path, headers={**self.queued, **headers})

    async def post(self, path: str, body: Any, **headers: str) -> httpx.Response:
        return await self.client.post(path, json=body, headers={**self.queued, **headers})


async def sign_up_and_log_in(client: httpx.AsyncClient, email: str) -> Caller:
    response = await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    response = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return Caller(client, response.json()["access_token"])


async def admitted(client: httpx.AsyncClient, email: str) -> Caller:
    caller = await sign_up_and_log_in(client, email)
    response = await client.post("/queue/tokens", headers=caller.auth)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "active"
    return attrs.evolve(caller, queue_token=response.json()["token"])


def error_code(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"], body
    return response.status_code, body["error"]["code"]


async def hold(caller: Caller, seat_id: int) -> dict[str, Any]:
    response = await caller.post("/reservations", {"seat_id": seat_id})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
