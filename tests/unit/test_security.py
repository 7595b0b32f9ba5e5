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

    async def test_a_dummy_verification_completes_without_matching(self) -> None:
        await cheap_hasher().verify_dummy("a password")

    def test_uses_the_recommended_costs_by_default(self) -> None:
        assert Argon2PasswordHasher()._hasher.memory_cost >= 19 * 1024
