"""JWT access tokens: HS256 only, ``exp`` and ``sub`` required, expiry judged by the Clock.

A token whose signature has been checked is remembered with its claims (a bounded map per
process), so a customer's later requests skip decoding and the HMAC; the expiry is still
judged on every request. Only valid tokens are remembered: a forged one costs its sender a
full check every time and takes no room.
"""

from __future__ import annotations

from datetime import datetime

import jwt

from concert_domain.accounts import AccessToken
from concert_domain.errors import Unauthorized
from concert_domain.ids import UserId
from concert_domain.ports import AccessTokens

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
VERIFIED_LIMIT = 100_000


class JwtAccessTokens(AccessTokens):
    def __init__(self, secret: bytes, lifetime_seconds: int = 3600) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
        if lifetime_seconds <= 0:
            raise ValueError("an access token must live a positive number of seconds")
        self._secret = secret
        self._lifetime = lifetime_seconds
        self._verified: dict[str, tuple[UserId, float]] = {}

    def issue(self, user_id: UserId, now: datetime) -> AccessToken:
        issued = int(now.timestamp())
        claims = {"sub": str(user_id), "iat": issued, "exp": issued + self._lifetime}
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return AccessToken(access_token=token, expires_in=self._lifetime)

    def verify(self, token: str, now: datetime) -> UserId:
        known = self._verified.get(token)
        user_id, expires_at = known if known is not None else self._check(token)
        if now.timestamp() >= expires_at:
            raise Unauthorized("the access token has expired; log in again")
        return user_id

    def _check(self, token: str) -> tuple[UserId, float]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as e:
            raise Unauthorized("the access token is not valid") from e
        expires_at, subject = claims["exp"], claims["sub"]
        if not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
            raise Unauthorized("the access token is not valid")
        if not isinstance(subject, str) or not subject.isdigit():
            raise Unauthorized("the access token is not valid")
        if len(self._verified) >= VERIFIED_LIMIT:
            self._verified.clear()
        checked = self._verified[token] = (UserId(int(subject)), float(expires_at))
        return checked
