"""The Lua scripts touch only the keys they are given in KEYS, and leave nothing behind.

Redis itself does not check the first: a cluster refuses a script a key outside its KEYS'
slot, not an undeclared key inside it (a ticket's key built from an argument, under the line's
hash tag, would pass). So the whole Redis contract runs again on a link whose scripts begin
with a guard: a local ``redis`` that fails any command on a key not in KEYS.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.exceptions import ResponseError

import services
from adapters.redis import (
    Keys,
    RedisLink,
    RedisQueueStore,
)
from adapters.redis.link import Script
from concert_domain.ids import UserId
from contracts.line import (
    NOW,
    POLICY,
    join_all,
)
from contracts.on_redis import (
    OnRedisAttemptLimiter,
    OnRedisHoldTimers,
    OnRedisQueueStore,
    OnRedisSeatMapVersions,
)

# Where the commands the scripts send have their keys: the first argument, or every one. A
# command in neither is refused, so that a new one is placed here on purpose.
_GUARD = """
local redis = (function(server)
  local declared = {}
  for _, key in ipairs(KEYS) do declared[key] = true end
  local first = {}
  for _, name in ipairs({
    'GET', 'SET', 'INCR', 'PEXPIRE', 'PTTL', 'HGET', 'HSET', 'HDEL', 'HMGET', 'HINCRBY', 'HLEN',
    'ZADD', 'ZREM', 'ZRANK', 'ZCARD', 'ZCOUNT', 'ZPOPMIN', 'ZRANGEBYSCORE', 'ZREMRANGEBYSCORE',
  }) do first[name] = true end
  local every = {DEL = true, EXISTS = true, UNLINK = true}
  local function check(command, ...)
    local name, args = string.upper(command), {...}
    local keys
    if first[name] then keys = {args[1]}
    elseif every[name] then keys = args
    else error('the key guard does not know where ' .. name .. ' has its keys') end
    for _, key in ipairs(keys) do
      if not declared[key] then error('undeclared key ' .. tostring(key) .. ' in ' .. name) end
    end
  end
  local guarded = {}
  function guarded.call(...) check(...) return server.call(...) end
  function guarded.pcall(...) check(...) return server.pcall(...) end
  return setmetatable(guarded, {__index = server})
end)(redis)
"""


def guarded(source: str) -> str:
    """``source`` with the guard after its ``#!lua`` line."""
    shebang, _, body = source.partition("\n")
    return f"{shebang}\n{_GUARD}{body}" if shebang.startswith("#!") else _GUARD + source


class GuardedLink(RedisLink):
    """A link whose scripts fail on any key not passed in KEYS."""

    def script(self, source: str) -> Script:
        return Script(self, guarded(source))


@pytest.fixture
async def redis_keys(redis_url: str) -> AsyncIterator[tuple[RedisLink, Keys]]:
    link = GuardedLink.from_url(redis_url)
    keys = Keys(prefix=f"concert-test-{secrets.token_hex(6)}")
    yield link, keys
    for key in await services.redis_keys_matching(link, f"{keys.prefix}:*"):
        await link.call("DEL", key)
    await link.aclose()


class TestTheGuard:
    async def test_refuses_a_key_built_in_the_script(
        self, redis_keys: tuple[RedisLink, Keys]
    ) -> None:
        link, keys = redis_keys
        built = link.script("#!lua\nreturn redis.call('HGET', KEYS[1] .. ':' .. ARGV[1], 'x')")
        with pytest.raises(ResponseError, match="undeclared key"):
            await built(keys=[keys.tickets], args=["token"])
        declared = link.script("#!lua\nreturn redis.call('HGET', KEYS[1], ARGV[1])")
        assert await declared(keys=[keys.tickets], args=["token"]) is None

    async def test_refuses_a_command_it_cannot_place_the_keys_of(
        self, redis_keys: tuple[RedisLink, Keys]
    ) -> None:
        link, keys = redis_keys
        unknown = link.script("#!lua\nreturn redis.call('ZUNIONSTORE', KEYS[1], 1, KEYS[1])")
        with pytest.raises(ResponseError, match="does not know where ZUNIONSTORE"):
            await unknown(keys=[keys.waiting])


class TestGuardedQueueStore(OnRedisQueueStore):
    async def test_the_line_forgets_everything_of_expired_tickets_after_an_hour(
        self, queue: RedisQueueStore, redis_keys: tuple[RedisLink, Keys]
    ) -> None:
        link, keys = redis_keys
        tokens = await join_all(queue, range(1, 6))  # two active, three wait
        for n in range(4):  # admit and lapse the rest
            later = NOW + n * timedelta(seconds=POLICY.active_seconds)
            await queue.admit(later, POLICY)
            await queue.expire_idle(later)
        await queue.expire(tokens[4], later)  # the last one pays
        await queue.expire_idle(later + timedelta(hours=2))
        assert await queue.get(tokens[0], later) is None
        assert await queue.live_ticket(UserId(5), later) is None
        left = await services.redis_keys_matching(link, f"{keys.prefix}:*")
        assert sorted(left) == [keys.sequence]  # a counter; the sets and hashes are empty


class TestGuardedHoldTimers(OnRedisHoldTimers):
    """The contract through the guard."""


class TestGuardedAttemptLimiter(OnRedisAttemptLimiter):
    """The contract through the guard."""


class TestGuardedSeatMapVersions(OnRedisSeatMapVersions):
    """The contract through the guard."""
