"""JWT access tokens: HS256 only, ``exp`` and ``sub`` required, ``role`` the account's role.

PyJWT makes them. A token checked here with the very header PyJWT gives an HS256 token is
verified directly: its HMAC-SHA256 compared in constant time, its claims decoded by msgspec,
for PyJWT's general machinery (any algorithm, any header) costs more than all else a queue
status request does; any other header goes to PyJWT, which refuses it unless it is HS256.
Whether a token has expired is judged by the caller against the Clock (`Identity.at`), so
this adapter reads no time of its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from datetime import UTC, datetime
from typing import Any

import jwt
import msgspec

from concert_domain.accounts import AccessToken, Identity, Role
from concert_domain.errors import Unauthorized
from concert_domain.ids import UserId
from concert_domain.ports import AccessTokens

ALGORITHM = "HS256"
_ROLES = frozenset(role.value for role in Role)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
MIN_SECRET_BYTES = 32


class JwtAccessTokens(AccessTokens):
    def __init__(self, secret: bytes, lifetime_seconds: int = 3600) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
        if lifetime_seconds <= 0:
            raise ValueError("an access token must live a positive number of seconds")
        self._secret = secret
        self._lifetime = lifetime_seconds
        self._header = jwt.encode({}, secret, algorithm=ALGORITHM).split(".")[0]

    def issue(self, user_id: UserId, role: Role, now: datetime) -> AccessToken:
        issued = int(now.timestamp())
        claims = {
            "sub": str(user_id),
            "role": role.value,
            "iat": issued,
            "exp": issued + self._lifetime,
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return AccessToken(access_token=token, expires_in=self._lifetime)

    def verify(self, token: str) -> Identity:
        header, _, rest = token.partition(".")
        claims = self._claims_of_ours(rest) if header == self._header else self._claims(token)
        expires_at, subject = claims.get("exp"), claims.get("sub")
        if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
            raise Unauthorized("the access token is not valid")
        if not math.isfinite(expires_at) or not 0 <= expires_at < 2**40:
            raise Unauthorized("the access token is not valid")
        if not isinstance(subject, str) or not (subject.isascii() and subject.isdigit()):
            raise Unauthorized("the access token is not valid")
        if len(subject) > 19 or int(subject) < 1:
            raise Unauthorized("the access token is not valid")
        role = claims.get("role", Role.CUSTOMER.value)  # a token from before roles: a customer
        if not isinstance(role, str) or role not in _ROLES:
            raise Unauthorized("the access token is not valid")
        return Identity(UserId(int(subject)), datetime.fromtimestamp(expires_at, UTC), Role(role))

    def _claims_of_ours(self, rest: str) -> dict[str, Any]:
        payload, _, signature = rest.partition(".")
        signed = f"{self._header}.{payload}".encode()
        expected = hmac.new(self._secret, signed, hashlib.sha256).digest()
        try:
            genuine = hmac.compare_digest(expected, _unpadded_base64(signature))
            claims = msgspec.json.decode(_unpadded_base64(payload)) if genuine else None
        except (binascii.Error, ValueError, msgspec.DecodeError):
            claims = None
        if not isinstance(claims, dict):
            raise Unauthorized("the access token is not valid")
        return claims

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as e:
            raise Unauthorized("the access token is not valid") from e
        return claims


def _unpadded_base64(segment: str) -> bytes:
    """A base64url segment as JWTs write it, without padding; raises on anything else, so
    that no two spellings of one token are both accepted."""
    if not _BASE64URL.fullmatch(segment):
        raise ValueError("not a base64url segment")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
