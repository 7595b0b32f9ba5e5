"""Who is calling: the client's address, believing ``X-Forwarded-For`` only from the proxies
the operator names (``CONCERT_TRUSTED_PROXIES``)."""

from __future__ import annotations

import ipaddress

import attrs
from starlette.requests import Request


def client_address(request: Request) -> str | None:
    """Where the request came from: the peer's address, or, when the peer is a proxy the
    operator named (`Proxies`), the last address before the named proxies in its
    ``X-Forwarded-For``."""
    peer = request.client.host if request.client else None
    proxies: Proxies = request.app.state.proxies
    if peer is None or not proxies.trusts(peer):
        return peer
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    for hop in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        if not proxies.trusts(hop):
            return hop[:64]
    return peer


@attrs.frozen
class Proxies:
    """The proxies whose ``X-Forwarded-For`` is believed (addresses or networks)."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, listed: str) -> Proxies:
        """From ``10.0.0.1, 10.1.0.0/16``; raises `ValueError` for what is not one."""
        parts = [part.strip() for part in listed.split(",") if part.strip()]
        return cls(tuple(ipaddress.ip_network(part, strict=False) for part in parts))

    def trusts(self, address: str) -> bool:
        if not self.networks:
            return False
        try:
            found = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(found in network for network in self.networks)
