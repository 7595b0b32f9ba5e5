"""JWT access tokens: HS256 only, ``exp`` and ``sub`` required.

Whether a token has expired is judged by the caller against the Clock (`Identity.at`), so this
adapter reads no time of its own.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import jwt

from concert_domain.accounts import AccessToken, Identity
from concert_domain.errors import Unauthorized
from concert_domain.ids import UserId
from concert_domain.ports import AccessTokens

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32


class JwtAccessTokens(AccessTokens):
    def __init__(self, secret: bytes, lifetime_seconds: int = 3600) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
        if lifetime_seconds <= 0:
            raise ValueError("an access token must live a positive number of seconds")
        self._secret = secret
        self._lifetime = lifetime_seconds

    def issue(self, user_id: UserId, now: datetime) -> AccessToken:
        issued = int(now.timestamp())
        claims = {"sub": str(user_id), "iat": issued, "exp": issued + self._lifetime}
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return AccessToken(access_token=token, expires_in=self._lifetime)

    def verify(self, token: str) -> Identity:
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
        if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
            raise Unauthorized("the access token is not valid")
        if not math.isfinite(expires_at) or not 0 <= expires_at < 2**40:
            raise Unauthorized("the access token is not valid")
        if not isinstance(subject, str) or not (subject.isascii() and subject.isdigit()):
            raise Unauthorized("the access token is not valid")
        if len(subject) > 19 or int(subject) < 1:
            raise Unauthorized("the access token is not valid")
        return Identity(UserId(int(subject)), datetime.fromtimestamp(expires_at, UTC))
