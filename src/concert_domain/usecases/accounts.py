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
from concert_domain.policy import ATTEMPT_WINDOW, LOGIN_FAILURE_LIMIT
from concert_domain.usecases._follow_up import follow_up


async def sign_up(
    email: str, password: str, client: str | None = None, *, deps: Dependencies
) -> Account:
    """Create an account with an empty wallet. Raises `InvalidRequest`, `EmailTaken`, and
    `RateLimited` when ``client`` (the caller's address, if known) has tried to sign up or log
    in too often this minute."""
    normalized = validate_email(email)
    validate_password(password)
    await _count_attempt_from(client, deps)
    password_hash = await deps.passwords.hash(password)
    async with deps.uow() as uow:
        account = await uow.accounts.add(normalized, password_hash, deps.clock.now())
        await uow.wallets.open(account.user_id)
        await uow.commit()
    return account


async def log_in(
    email: str, password: str, client: str | None = None, *, deps: Dependencies
) -> AccessToken:
    """Trade an email and password for an access token.

    An unknown email and a wrong password get the same error after about the same time. Each
    attempt is counted against its email before its password is checked, and forgiven if it
    was right: once ``LOGIN_FAILURE_LIMIT`` attempts at an email have failed (or are being
    checked) in a window, every attempt is refused with `RateLimited` until the window closes,
    the right password included. ``client``'s attempts count as for `sign_up`.
    """
    normalized = normalize_email(email)
    now = deps.clock.now()
    await _count_attempt_from(client, deps)
    email_key = f"email:{normalized}"
    if not await deps.attempts.attempt(email_key, now, ATTEMPT_WINDOW, LOGIN_FAILURE_LIMIT):
        raise RateLimited("too many failed logins for this email; try again within a minute")
    async with deps.uow(read_only=True) as uow:
        account = await uow.accounts.get_by_email(normalized)
    if account is None:
        await deps.passwords.verify_dummy(password)
    elif await deps.passwords.verify(account.password_hash, password):
        await follow_up(deps.attempts.forgive(email_key, now), "forgive a right login")
        return deps.tokens.issue(account.user_id, now)
    raise InvalidCredentials("email or password is wrong")


async def authenticate(access_token: str | None, *, deps: Dependencies) -> UserId:
    """The customer an access token names. Raises `Unauthorized` for a missing, malformed,
    tampered or expired token, and for one that names no account."""
    if not access_token:
        raise Unauthorized("an access token is required")
    user_id = deps.tokens.verify(access_token).at(deps.clock.now())
    async with deps.uow(read_only=True) as uow:
        if not await uow.accounts.exists(user_id):
            raise Unauthorized("the access token names no account; sign up or log in again")
    return user_id


async def _count_attempt_from(client: str | None, deps: Dependencies) -> None:
    limit = deps.policy.auth_attempts_per_address
    if client is None or not limit:
        return
    if not await deps.attempts.attempt(
        f"address:{client}", deps.clock.now(), ATTEMPT_WINDOW, limit
    ):
        raise RateLimited(
            "too many sign-ups and logins from your address; try again within a minute"
        )
