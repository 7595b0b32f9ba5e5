"""What can be told of the Redis scripts and key names without a server: each script asks a
cluster to check its slot, and the keys a script is given share one. That the scripts touch
no other key is proved on a real Redis (tests/integration/test_redis_script_keys.py), and that
they run on a three-node cluster in tests/integration/test_redis_cluster.py."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from adapters.redis import Keys, scripts
from concert_domain.ids import DateId, SeatId, UserId

SCRIPTS = {
    name: value
    for name, value in vars(scripts).items()
    if name.isupper() and not name.startswith("_")
}


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def test_every_script_is_there() -> None:
    assert sorted(SCRIPTS) == [
        "ADMIT", "ATTEMPT", "CURRENT_VERSION", "EXPIRE_IDLE", "EXPIRE_ONE", "EXTEND_TIMER",
        "FORGIVE", "JOIN", "LIVE_TICKET", "RELEASE_TIMER", "TAKE_TIMERS", "TICKET",
    ]  # fmt: skip


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_script_starts_with_a_shebang_and_no_flags_so_a_cluster_checks_its_slot(
    name: str,
) -> None:
    assert SCRIPTS[name].startswith("#!lua\n")


@pytest.mark.parametrize("prefix", ["concert", "shop:7", "{app}"])
def test_the_line_its_tickets_timers_and_hold_attempts_share_one_slot(prefix: str) -> None:
    keys = Keys(prefix)
    line = [keys.waiting, keys.active, keys.admitted, keys.sequence, keys.tickets]
    line += [keys.live_tokens, keys.retired, keys.hold(SeatId(1)), keys.hold(SeatId(99_999))]
    line += [keys.hold_attempts(UserId(1)), keys.hold_attempts(UserId(123_456))]
    assert len({slot(key) for key in line}) == 1


def test_versions_and_login_counters_spread_over_slots() -> None:
    keys = Keys()
    versions = {slot(keys.seat_map_version(DateId(n))) for n in range(100)}
    counters = {slot(keys.attempts(f"customer{n}@example.com")) for n in range(100)}
    assert len(versions) > 90 and len(counters) > 90
