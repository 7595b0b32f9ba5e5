"""Security adapters: argon2id password hashing and JWT access tokens."""

from adapters.security.passwords import Argon2PasswordHasher
from adapters.security.tokens import JwtAccessTokens

__all__ = ["Argon2PasswordHasher", "JwtAccessTokens"]
