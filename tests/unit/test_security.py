from adapters.security import Argon2PasswordHasher
from booking import cheap_hasher


class TestArgon2PasswordHasher:
    async def test_hashes_with_argon2id_and_a_salt(self) -> None:
        hasher = cheap_hasher()
        first, second = await hasher.hash("a password"), await hasher.hash("a password")
        assert first.startswith("$argon2id$")
        assert first != second

    async def test_verifies_the_right_password_only(self) -> None:
        hasher = cheap_hasher()
        stored = await hasher.hash("a password")
        assert await hasher.verify(stored, "a password")
        assert not await hasher.verify(stored, "a passwore")

    async def test_treats_a_malformed_hash_as_a_mismatch(self) -> None:
        assert not await cheap_hasher().verify("not a hash", "a password")

    async def test_a_dummy_verification_runs_one_real_verification_that_fails(self) -> None:
        calls: list[tuple[str, str, bool]] = []

        class Recording(Argon2PasswordHasher):
            async def verify(self, password_hash: str, password: str) -> bool:
                matched = await super().verify(password_hash, password)
                calls.append((password_hash, password, matched))
                return matched

        hasher = Recording(time_cost=1, memory_cost=64, parallelism=1)
        await hasher.verify_dummy("a password")
        await hasher.verify_dummy("another")
        assert [(h[:10], p, m) for h, p, m in calls] == [
            ("$argon2id$", "a password", False),
            ("$argon2id$", "another", False),
        ]
        assert calls[0][0] == calls[1][0]  # one dummy hash, made once

    def test_uses_the_recommended_costs_by_default(self) -> None:
        assert Argon2PasswordHasher()._hasher.memory_cost >= 19 * 1024
