"""Sign up, log in, and tell who an access token belongs to."""

from __future__ import annotations

from concert_domain.accounts import (
    AccessToken,
    Account,
    normalize_email,
    validate_email,
    validate_password,
)
from concert_domain.dependencies import Dependencies
from concert_domain.errors import InvalidCredentials, RateLimited, Unauthorized
from concert_domain.ids import UserId
from concert_domain.policy import LOGIN_FAILURE_LIMIT, LOGIN_FAILURE_WINDOW


async def sign_up(email: str, password: str, *, deps: Dependencies) -> Account:
    """Create an account with an empty wallet. Raises `InvalidRequest`, `EmailTaken`."""
    normalized = validate_email(email)
    password_hash = await deps.passwords.hash(validate_password(password))
    async with deps.uow() as uow:
        account = await uow.accounts.add(normalized, password_hash, deps.clock.now())
        await uow.wallets.open(account.user_id)
        await uow.commit()
    return account


async def log_in(email: str, password: str, *, deps: Dependencies) -> AccessToken:
    """Trade an email and password for an access token.

    An unknown email and a wrong password get the same error after about the same time. Once an
    email has failed ``LOGIN_FAILURE_LIMIT`` times in a window, every attempt is refused with
    `RateLimited` until the window closes, the right password included.
    """
    normalized = normalize_email(email)
    now = deps.clock.now()
    if await deps.login_limiter.failures(normalized, now) >= LOGIN_FAILURE_LIMIT:
        raise RateLimited("too many failed logins for this email; try again within a minute")
    async with deps.uow(read_only=True) as uow:
        account = await uow.accounts.get_by_email(normalized)
    if account is None:
        await deps.passwords.verify_dummy(password)
    elif await deps.passwords.verify(account.password_hash, password):
        return deps.tokens.issue(account.user_id, now)
    await deps.login_limiter.record_failure(normalized, now, LOGIN_FAILURE_WINDOW)
    raise InvalidCredentials("email or password is wrong")


def authenticate(access_token: str | None, *, deps: Dependencies) -> UserId:
    """The customer an access token names. Raises `Unauthorized`. Does no I/O."""
    if not access_token:
        raise Unauthorized("an access token is required")
    return deps.tokens.verify(access_token).at(deps.clock.now())
