"""Sign up, log in, tell who an access token belongs to, make admins, and show a customer
everything that is counting down for them."""

from __future__ import annotations

import math

import attrs

from concert_domain.accounts import (
    AccessToken,
    Account,
    Identity,
    Role,
    normalize_email,
    validate_email,
    validate_password,
)
from concert_domain.dependencies import Dependencies
from concert_domain.errors import (
    Forbidden,
    InvalidCredentials,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unauthorized,
)
from concert_domain.policy import ATTEMPT_WINDOW, LOGIN_FAILURE_LIMIT
from concert_domain.queue import QueueStatus
from concert_domain.reservations import Reservation
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
        return deps.tokens.issue(account.user_id, account.role, now)
    raise InvalidCredentials("email or password is wrong")


async def authenticate(access_token: str | None, *, deps: Dependencies) -> Identity:
    """Whom an access token names, and in which role. Raises `Unauthorized` for a missing,
    malformed, tampered or expired token, and for one that names no account."""
    if not access_token:
        raise Unauthorized("an access token is required")
    identity = deps.tokens.verify(access_token)
    identity.at(deps.clock.now())
    async with deps.uow(read_only=True) as uow:
        if not await uow.accounts.exists(identity.user_id):
            raise Unauthorized("the access token names no account; sign up or log in again")
    return identity


def require_admin(caller: Identity) -> None:
    """Raises `Forbidden` unless ``caller`` is an admin."""
    if caller.role is not Role.ADMIN:
        raise Forbidden("only an operator may do this")


async def create_admin(
    email: str, password: str | None, *, deps: Dependencies
) -> tuple[Account, bool]:
    """Make the account of ``email`` an admin, creating it with ``password`` if there is
    none; True if it was created. Takes effect at the account's next login. Raises
    `InvalidRequest` (a bad email, or no valid password for a new account)."""
    normalized = validate_email(email)
    async with deps.uow() as uow:
        account = await uow.accounts.get_by_email(normalized)
        if account is not None:
            await uow.accounts.set_role(account.user_id, Role.ADMIN)
            await uow.commit()
            return attrs.evolve(account, role=Role.ADMIN), False
    if password is None:
        raise InvalidRequest(f"{normalized} has no account: give a password to make one")
    password_hash = await deps.passwords.hash(validate_password(password))
    async with deps.uow() as uow:
        account = await uow.accounts.add(normalized, password_hash, deps.clock.now(), Role.ADMIN)
        await uow.wallets.open(account.user_id)
        await uow.commit()
    return account, True


@attrs.frozen
class CountingDown:
    """A hold and the whole seconds it has left."""

    reservation: Reservation
    seconds_left: int


@attrs.frozen
class Me:
    account: Account
    balance: int
    queue: QueueStatus | None
    holds: list[CountingDown]


async def me(caller: Identity, *, deps: Dependencies) -> Me:
    """The caller's account, in the role their access token gives them (a role changed since
    takes effect at the next login), balance, place in line (their waiting or active ticket)
    and unexpired holds with their countdowns: one read of the database and one of the line."""
    now = deps.clock.now()
    user_id = caller.user_id
    async with deps.uow(read_only=True) as uow:
        overview = await uow.accounts.overview(user_id, now)
    if overview is None:
        raise NotFound(f"no account {user_id}")
    ticket = await deps.queue.live_ticket(user_id, now)
    queue = None if ticket is None else QueueStatus.of(ticket.as_of(now), deps.policy.queue)
    holds = [
        CountingDown(hold, math.ceil((hold.expires_at - now).total_seconds()))
        for hold in overview.holds
    ]
    account = attrs.evolve(overview.account, role=caller.role)
    return Me(account, overview.balance, queue, holds)


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
