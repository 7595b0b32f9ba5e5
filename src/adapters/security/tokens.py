"""JWT access tokens: HS256 only, ``exp`` and ``sub`` required, expiry judged by the Clock."""

from __future__ import annotations

from datetime import datetime

import jwt

from concert_domain.accounts import AccessToken
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

    def verify(self, token: str, now: datetime) -> UserId:
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
        if not isinstance(expires_at, int | float) or now.timestamp() >= expires_at:
            raise Unauthorized("the access token has expired; log in again")
        if not isinstance(subject, str) or not subject.isdigit():
            raise Unauthorized("the access token is not valid")
        return UserId(int(subject))
