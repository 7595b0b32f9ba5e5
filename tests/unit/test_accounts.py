import asyncio
import warnings
from datetime import timedelta

import jwt
import pytest

from adapters.clock import ManualClock
from adapters.security import JwtAccessTokens
from booking import PASSWORD, memory_deps
from concert_domain import BookingPolicy, Dependencies
from concert_domain.accounts import Role
from concert_domain.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidRequest,
    RateLimited,
    Unauthorized,
)
from concert_domain.ids import UserId
from concert_domain.usecases import authenticate, log_in, sign_up


class TestSignUp:
    async def test_creates_an_account_with_a_normalized_email_and_an_empty_wallet(
        self, deps: Dependencies
    ) -> None:
        account = await sign_up("  Mina@Example.COM ", PASSWORD, deps=deps)
        assert account.email == "mina@example.com"
        assert account.password_hash.startswith("$argon2id$")
        async with deps.uow() as uow:
            assert await uow.wallets.balance(account.user_id) == 0

    async def test_refuses_an_email_that_exists_in_another_case(self, deps: Dependencies) -> None:
        await sign_up("mina@example.com", PASSWORD, deps=deps)
        with pytest.raises(EmailTaken):
            await sign_up("MINA@example.com", PASSWORD, deps=deps)

    @pytest.mark.parametrize(
        "email", ["", "mina", "mina@", "@example.com", "mina@example", "mi na@example.com"]
    )
    async def test_refuses_an_email_that_is_not_an_address(
        self, deps: Dependencies, email: str
    ) -> None:
        with pytest.raises(InvalidRequest):
            await sign_up(email, PASSWORD, deps=deps)

    @pytest.mark.parametrize("password", ["", "short77", "x" * 257])
    async def test_refuses_a_password_shorter_than_8_or_longer_than_256(
        self, deps: Dependencies, password: str
    ) -> None:
        with pytest.raises(InvalidRequest):
            await sign_up("mina@example.com", password, deps=deps)

    async def test_accepts_passwords_of_exactly_8_and_256_characters(
        self, deps: Dependencies
    ) -> None:
        for email, password in (("a@example.com", "x" * 8), ("b@example.com", "y" * 256)):
            account = await sign_up(email, password, deps=deps)
            token = await log_in(email, password, deps=deps)
            assert (await authenticate(token.access_token, deps=deps)).user_id == account.user_id


class TestLogIn:
    async def test_issues_a_bearer_token_that_names_the_customer(self, deps: Dependencies) -> None:
        account = await sign_up("mina@example.com", PASSWORD, deps=deps)
        token = await log_in("MINA@example.com", PASSWORD, deps=deps)
        assert token.token_type == "Bearer"
        assert token.expires_in == 3600
        assert (await authenticate(token.access_token, deps=deps)).user_id == account.user_id

    async def test_gives_the_same_error_for_a_wrong_password_and_an_unknown_email(
        self, deps: Dependencies
    ) -> None:
        await sign_up("mina@example.com", PASSWORD, deps=deps)
        with pytest.raises(InvalidCredentials) as wrong_password:
            await log_in("mina@example.com", "not the password", deps=deps)
        with pytest.raises(InvalidCredentials) as unknown_email:
            await log_in("nobody@example.com", PASSWORD, deps=deps)
        assert wrong_password.value.message == unknown_email.value.message

    async def test_refuses_an_email_after_10_failures_within_a_minute_until_it_passes(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        await sign_up("mina@example.com", PASSWORD, deps=deps)
        for _ in range(10):
            with pytest.raises(InvalidCredentials):
                await log_in("mina@example.com", "not the password", deps=deps)
            clock.advance(5)
        with pytest.raises(RateLimited):
            await log_in("mina@example.com", PASSWORD, deps=deps)
        clock.advance(10)
        assert (await log_in("mina@example.com", PASSWORD, deps=deps)).access_token

    async def test_attempts_sent_at_once_cannot_pass_the_limit_and_right_ones_are_forgiven(
        self, deps: Dependencies
    ) -> None:
        await sign_up("mina@example.com", PASSWORD, deps=deps)
        for _ in range(20):  # right logins do not count as failures
            assert (await log_in("mina@example.com", PASSWORD, deps=deps)).access_token
        attempts = [log_in("mina@example.com", "not the password", deps=deps) for _ in range(24)]
        attempts.append(log_in("mina@example.com", PASSWORD, deps=deps))  # the right one, last
        results = await asyncio.gather(*attempts, return_exceptions=True)
        assert sum(isinstance(r, InvalidCredentials) for r in results) == 10
        assert sum(isinstance(r, RateLimited) for r in results) == 15
        assert isinstance(results[-1], RateLimited)

    async def test_counts_sign_ups_and_logins_per_client_address(self, clock: ManualClock) -> None:
        deps = memory_deps(clock, BookingPolicy(auth_attempts_per_address=3))
        await sign_up("a@example.com", PASSWORD, "10.0.0.1", deps=deps)
        await log_in("a@example.com", PASSWORD, "10.0.0.1", deps=deps)
        with pytest.raises(InvalidCredentials):
            await log_in("a@example.com", "wrong password", "10.0.0.1", deps=deps)
        with pytest.raises(RateLimited):
            await sign_up("b@example.com", PASSWORD, "10.0.0.1", deps=deps)
        with pytest.raises(RateLimited):
            await log_in("a@example.com", PASSWORD, "10.0.0.1", deps=deps)
        await log_in("a@example.com", PASSWORD, "10.0.0.2", deps=deps)  # another address
        await log_in("a@example.com", PASSWORD, deps=deps)  # an address not known: no limit
        clock.advance(60)
        await sign_up("b@example.com", PASSWORD, "10.0.0.1", deps=deps)

    async def test_counts_failures_per_email(self, deps: Dependencies) -> None:
        await sign_up("mina@example.com", PASSWORD, deps=deps)
        for _ in range(10):
            with pytest.raises(InvalidCredentials):
                await log_in("other@example.com", "not the password", deps=deps)
        assert (await log_in("mina@example.com", PASSWORD, deps=deps)).access_token

    async def test_nine_failures_do_not_lock_the_email(self, deps: Dependencies) -> None:
        await sign_up("mina@example.com", PASSWORD, deps=deps)
        for _ in range(9):
            with pytest.raises(InvalidCredentials):
                await log_in("mina@example.com", "not the password", deps=deps)
        assert (await log_in("mina@example.com", PASSWORD, deps=deps)).access_token


class TestAuthenticate:
    async def test_refuses_a_genuine_token_that_names_no_account(self, clock: ManualClock) -> None:
        deps = memory_deps(clock)
        forged = deps.tokens.issue(
            UserId(999), Role.CUSTOMER, clock.now()
        ).access_token  # signed with our key
        with pytest.raises(Unauthorized, match="no account"):
            await authenticate(forged, deps=deps)

    async def test_refuses_a_missing_token(self, deps: Dependencies) -> None:
        for missing in (None, ""):
            with pytest.raises(Unauthorized):
                await authenticate(missing, deps=deps)

    async def test_refuses_an_expired_token(self, deps: Dependencies, clock: ManualClock) -> None:
        await sign_up("mina@example.com", PASSWORD, deps=deps)
        token = await log_in("mina@example.com", PASSWORD, deps=deps)
        clock.advance(timedelta(seconds=3599))
        await authenticate(token.access_token, deps=deps)
        clock.advance(timedelta(seconds=1))
        with pytest.raises(Unauthorized):
            await authenticate(token.access_token, deps=deps)

    async def test_refuses_a_tampered_token(self, deps: Dependencies) -> None:
        await sign_up("mina@example.com", PASSWORD, deps=deps)
        token = (await log_in("mina@example.com", PASSWORD, deps=deps)).access_token
        header, _payload, signature = token.split(".")
        forged = jwt.encode({"sub": "2", "exp": 4_000_000_000}, "another key" * 4, "HS256")
        for bad in (
            f"{header}.{forged.split('.')[1]}.{signature}",
            token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
            "not a token",
        ):
            with pytest.raises(Unauthorized):
                await authenticate(bad, deps=deps)

    def test_refuses_unsigned_and_foreign_algorithm_tokens(self, clock: ManualClock) -> None:
        tokens = JwtAccessTokens(b"s" * 32)
        unsigned = jwt.encode({"sub": "1", "exp": 4_000_000_000}, key=None, algorithm="none")
        with warnings.catch_warnings():  # the same key, short for HS512: the point is the pin
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            other_algorithm = jwt.encode({"sub": "1", "exp": 4_000_000_000}, b"s" * 32, "HS512")
        for bad in (unsigned, other_algorithm):
            with pytest.raises(Unauthorized):
                tokens.verify(bad)

    @pytest.mark.parametrize(
        "claims",
        [
            {"sub": "1"},
            {"sub": "1", "exp": float("nan")},
            {"sub": "1", "exp": float("inf")},
            {"sub": "1", "exp": "4000000000"},
            {"sub": 1, "exp": 4_000_000_000},
            {"sub": "\u0661", "exp": 4_000_000_000},
            {"sub": "0", "exp": 4_000_000_000},
            {"sub": "9" * 30, "exp": 4_000_000_000},
        ],
    )
    def test_refuses_a_signed_token_whose_claims_are_not_a_customer_and_an_expiry(
        self, claims: dict[str, object]
    ) -> None:
        token = jwt.encode(claims, b"s" * 32, "HS256")
        with pytest.raises(Unauthorized):
            JwtAccessTokens(b"s" * 32).verify(token)

    def test_refuses_a_token_of_our_shape_whose_payload_or_signature_was_changed(
        self, clock: ManualClock
    ) -> None:
        tokens = JwtAccessTokens(b"s" * 32)
        header, payload, signature = tokens.issue(
            UserId(7), Role.CUSTOMER, clock.now()
        ).access_token.split(".")
        other = jwt.encode({"sub": "8", "exp": 4_000_000_000}, b"s" * 32, "HS256").split(".")[1]
        for bad in (
            f"{header}.{other}.{signature}",  # another customer's claims, our signature
            f"{header}.{payload}.{signature}=",  # padded
            f"{header}.{payload}.{signature[:-1]}",  # cut
            f"{header}.{payload}",  # no signature at all
            f"{header}.{payload}.{signature}.extra",
            f"{header}.{payload}.{signature[:5]}!{signature[5:]}",  # a character base64 skips
            f"{header}.{payload}.{signature[:5]}+{signature[5:]}",  # standard, not url, base64
            f"{header}.{payload}.{signature[:-2]}\u00e9\u00e9",  # not ASCII
        ):
            with pytest.raises(Unauthorized):
                tokens.verify(bad)
        assert tokens.verify(f"{header}.{payload}.{signature}").user_id == 7

    def test_round_trips_a_customer_id_the_role_and_the_expiry(self, clock: ManualClock) -> None:
        tokens = JwtAccessTokens(b"s" * 32, lifetime_seconds=60)
        identity = tokens.verify(tokens.issue(UserId(42), Role.ADMIN, clock.now()).access_token)
        assert (identity.user_id, identity.role) == (42, Role.ADMIN)
        assert identity.expires_at == clock.now() + timedelta(seconds=60)

    def test_reads_a_token_from_before_roles_as_a_customers_and_refuses_unknown_roles(
        self,
    ) -> None:
        tokens = JwtAccessTokens(b"s" * 32)
        old = jwt.encode({"sub": "8", "exp": 4_000_000_000}, b"s" * 32, "HS256")
        assert tokens.verify(old).role is Role.CUSTOMER
        for role in ("root", ["admin"], 1, None):
            forged = jwt.encode({"sub": "8", "exp": 4_000_000_000, "role": role}, b"s" * 32)
            with pytest.raises(Unauthorized):
                tokens.verify(forged)

    def test_refuses_a_secret_shorter_than_32_bytes(self) -> None:
        with pytest.raises(ValueError, match="32 bytes"):
            JwtAccessTokens(b"s" * 31)
