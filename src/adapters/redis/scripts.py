"""The Lua scripts: each read-decide-write on Redis is one script, so it is atomic.

Time is passed in (``now`` in ms from the Clock port), never read from Redis, so Redis agrees
with the database and the tests move time by hand; expired tickets are forgotten by that time
too (`EXPIRE_IDLE`), like the in-memory line's. Only hold timers, attempt counters and seat-map
versions have TTLs.

A script touches only the keys passed to it in KEYS (the line's tickets and customers are
fields of its hashes, so that no key is named by what a script reads or is given), and all of
them in one Redis Cluster slot (`keys.Keys`). Each starts with Redis 7's ``#!lua`` line and no
flags, so that a cluster refuses it any key outside its slot.
"""


def _script(*parts: str) -> str:
    return "#!lua\n" + "".join(parts)


# A ticket is one field of the line's ticket hash: 'user|status', or 'user|active|expires'
# (ms) while active. Its user, status and expiry ('' unless active), or nil if unknown.
_TICKETS = """
local function ticket_fields(tickets, token)
  local packed = redis.call('HGET', tickets, token)
  if not packed then return nil end
  return string.match(packed, '^([^|]*)|([^|]*)|?(.*)$')
end
"""

# Shared by the scripts that change the line, whose KEYS begin: waiting, active, admitted,
# tickets, live tokens, retired. A retired ticket stays known as expired until `retention`
# after it expired, when `forget_retired` removes it.
_LINE = """
local function retire(token, now, retention)
  local user = ticket_fields(KEYS[4], token)
  redis.call('ZREM', KEYS[2], token)
  if not user then return end
  redis.call('HSET', KEYS[4], token, user .. '|expired')
  redis.call('ZADD', KEYS[6], now + retention, token)
  if redis.call('HGET', KEYS[5], user) == token then
    redis.call('HDEL', KEYS[5], user)
  end
end

local function expire_lapsed(now, retention)
  local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  for _, token in ipairs(lapsed) do
    retire(token, now, retention)
  end
  return #lapsed
end

local function activate(token, user, now, active_ms)
  local expires = now + active_ms
  redis.call('HSET', KEYS[4], token, user .. '|active|' .. expires)
  redis.call('ZADD', KEYS[2], expires, token)
  redis.call('ZADD', KEYS[3], now, token)
end

-- at most a batch a call, so that a backlog (after the scheduler was down) never holds Redis
-- for long: the scheduler calls every tick
local function forget_retired(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, 1000)
  if #gone == 0 then return end
  redis.call('HDEL', KEYS[4], unpack(gone))
  redis.call('ZREM', KEYS[6], unpack(gone))
end
"""

# Shared by JOIN and TICKET: a ticket as one reply, so that a join or a status read is one
# round trip. Nil cannot sit inside a Lua table reply, so absent values are '' and -1.
_DESCRIBE = """
local function describe(token, tickets, waiting_key, admitted_key, now, window_ms)
  local user, status, expires = ticket_fields(tickets, token)
  if not user then return false end
  local rank, recent = -1, 0
  if status == 'waiting' then
    rank = redis.call('ZRANK', waiting_key, token) or -1
    redis.call('ZREMRANGEBYSCORE', admitted_key, '-inf', now - window_ms)
    recent = redis.call('ZCARD', admitted_key)
  end
  return {token, user, status, expires, rank, recent}
end
"""

# KEYS: tickets, waiting, admitted
# ARGV: token, now, rate window (ms)
TICKET = _script(
    _TICKETS,
    _DESCRIBE,
    """
return describe(ARGV[1], KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[2]), tonumber(ARGV[3]))
""",
)

# KEYS: live tokens, tickets, waiting, admitted
# ARGV: user id, now, rate window (ms)
LIVE_TICKET = _script(
    _TICKETS,
    _DESCRIBE,
    """
local token = redis.call('HGET', KEYS[1], ARGV[1])
if not token then return false end
return describe(token, KEYS[2], KEYS[3], KEYS[4], tonumber(ARGV[2]), tonumber(ARGV[3]))
""",
)

# KEYS: waiting, active, admitted, tickets, live tokens, retired, sequence
# ARGV: now, capacity, active_ms, new token, retention (ms), user id, rate window (ms)
# Returns {created (0 or 1), the ticket as `describe` gives it}
JOIN = _script(
    _TICKETS,
    _LINE,
    _DESCRIBE,
    """
local now, capacity, active_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local token, retention, user = ARGV[4], tonumber(ARGV[5]), ARGV[6]
local window_ms = tonumber(ARGV[7])
expire_lapsed(now, retention)
local live = redis.call('HGET', KEYS[5], user)
if live then
  local _, status = ticket_fields(KEYS[4], live)
  if status == 'waiting' or status == 'active' then
    return {0, describe(live, KEYS[4], KEYS[1], KEYS[3], now, window_ms)}
  end
end
local seq = redis.call('INCR', KEYS[7])
redis.call('HSET', KEYS[5], user, token)
if redis.call('ZCARD', KEYS[1]) == 0 and redis.call('ZCARD', KEYS[2]) < capacity then
  activate(token, user, now, active_ms)
else
  redis.call('HSET', KEYS[4], token, user .. '|waiting')
  redis.call('ZADD', KEYS[1], seq, token)
end
return {1, describe(token, KEYS[4], KEYS[1], KEYS[3], now, window_ms)}
""",
)

# KEYS: waiting, active, admitted, tickets, live tokens, retired
# ARGV: now, capacity, active_ms, retention (ms)
ADMIT = _script(
    _TICKETS,
    _LINE,
    """
local now, capacity, active_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
expire_lapsed(now, tonumber(ARGV[4]))
local room = capacity - redis.call('ZCARD', KEYS[2])
if room <= 0 then return 0 end
local next_in_line = redis.call('ZPOPMIN', KEYS[1], room)
for i = 1, #next_in_line, 2 do
  local token = next_in_line[i]
  local user = ticket_fields(KEYS[4], token)
  if user then activate(token, user, now, active_ms) end
end
return #next_in_line / 2
""",
)

# Also forgets the tickets retired long enough ago, and admissions older than the rate window.
# KEYS: waiting, active, admitted, tickets, live tokens, retired
# ARGV: now, retention (ms), rate window (ms)
EXPIRE_IDLE = _script(
    _TICKETS,
    _LINE,
    """
local now = tonumber(ARGV[1])
local expired = expire_lapsed(now, tonumber(ARGV[2]))
forget_retired(now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[3]))
return expired
""",
)

# KEYS: waiting, active, admitted, tickets, live tokens, retired
# ARGV: now, retention (ms), token
EXPIRE_ONE = _script(
    _TICKETS,
    _LINE,
    """
local _, status = ticket_fields(KEYS[4], ARGV[3])
if status == 'active' then
  retire(ARGV[3], tonumber(ARGV[1]), tonumber(ARGV[2]))
  return 1
end
return 0
""",
)

# Shared by ATTEMPT and TAKE_TIMERS: count one attempt in the key's fixed window (opened at
# its first attempt), or refuse it when `limit` are counted already. 1 if counted, 0 if not.
_COUNT_ATTEMPT = """
local function count_attempt(key, now, window_ms, limit)
  local ends = tonumber(redis.call('HGET', key, 'ends'))
  if not ends or ends <= now then
    if limit < 1 then return 0 end
    redis.call('HSET', key, 'ends', now + window_ms, 'count', 1)
    redis.call('PEXPIRE', key, window_ms)
    return 1
  end
  if tonumber(redis.call('HGET', key, 'count')) >= limit then return 0 end
  redis.call('HINCRBY', key, 'count', 1)
  return 1
end
"""

# KEYS: counter.  ARGV: now (ms), window (ms), limit
ATTEMPT = _script(
    _COUNT_ATTEMPT,
    """
return count_attempt(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
""",
)

# KEYS: counter.  ARGV: now (ms)
FORGIVE = _script(
    """
local ends = tonumber(redis.call('HGET', KEYS[1], 'ends'))
if ends and ends > tonumber(ARGV[1]) and tonumber(redis.call('HGET', KEYS[1], 'count')) > 0 then
  redis.call('HINCRBY', KEYS[1], 'count', -1)
end
return 0
"""
)

# The queue gate, the customer's attempts and the seats' timers in one step: for the owner of
# a ticket that is active at now (`concert_domain.queue.admitted`), count the attempt (unless
# the limit is 0) and take the timers of the first free block of seats (none of its seats has a
# timer running past now) that leaves no seat alone (on none of its sides is the seat next to
# it without a running timer and the one beyond with one, or absent), failing that, if allowed,
# of the first free block. Returns {how it went (`HoldAttempt`'s values), the ticket as
# `describe` gives it (nil if unknown), the 1-based index of the block taken (0 if none), the
# 1-based places among the keys after the first four of the seats found with running timers,
# the blocks' own and their sides'}.
# KEYS: tickets, waiting, admitted, the customer's attempts, then for each block its seats'
#       timers and then, for each of its sides, the near seat's timer and the far one's if any
# ARGV: token, now, rate window (ms), user id, expires (ms), ttl (ms), attempt limit,
#       attempt window (ms), 1 if a block that leaves a seat alone may be taken (else 0), then
#       for each block: its number of seats, its number of sides, and for each side 1 if it
#       has a far seat, else 0
TAKE_TIMERS = _script(
    _TICKETS,
    _DESCRIBE,
    _COUNT_ATTEMPT,
    """
local now = tonumber(ARGV[2])
local ticket = describe(ARGV[1], KEYS[1], KEYS[2], KEYS[3], now, tonumber(ARGV[3]))
if not ticket or ticket[2] ~= ARGV[4] or ticket[3] ~= 'active' then
  return {'not_admitted', ticket, 0, {}}
end
if (tonumber(ticket[4]) or 0) <= now then return {'not_admitted', ticket, 0, {}} end
local limit = tonumber(ARGV[7])
if limit > 0 and count_attempt(KEYS[4], now, tonumber(ARGV[8]), limit) == 0 then
  return {'too_frequent', ticket, 0, {}}
end
local function runs(key, for_another)
  local current = redis.call('GET', key)
  if not current then return false end
  local owner, expires = string.match(current, '^(.-)|(%d+)$')
  if for_another and owner == ARGV[4] then return false end
  return expires ~= nil and tonumber(expires) > now
end
local busy, blocks = {}, {}
local key, arg = 5, 10
while arg <= #ARGV do
  local size, sides = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1])
  arg = arg + 2
  local block = {first = key, size = size, free = true, alone = false}
  for seat = key, key + size - 1 do
    -- the caller's own timer (of a request of theirs that died before the database) is no
    -- bar to them: the database decides
    if runs(KEYS[seat], true) then
      block.free = false
      busy[#busy + 1] = seat - 4
    end
  end
  key = key + size
  for _ = 1, sides do
    local near_free = not runs(KEYS[key])
    if not near_free then busy[#busy + 1] = key - 4 end
    local far_taken = true
    if ARGV[arg] == '1' then
      far_taken = runs(KEYS[key + 1])
      if far_taken then busy[#busy + 1] = key + 1 - 4 end
      key = key + 1
    end
    key, arg = key + 1, arg + 1
    if near_free and far_taken then block.alone = true end
  end
  blocks[#blocks + 1] = block
end
local chosen
for n, block in ipairs(blocks) do
  if block.free and not block.alone then chosen = n break end
end
if not chosen and ARGV[9] == '1' then
  for n, block in ipairs(blocks) do
    if block.free then chosen = n break end
  end
end
if not chosen then return {'seat_busy', ticket, 0, busy} end
local taken = blocks[chosen]
for seat = taken.first, taken.first + taken.size - 1 do
  redis.call('SET', KEYS[seat], ARGV[4] .. '|' .. ARGV[5], 'PX', ARGV[6])
end
return {'taken', ticket, chosen, busy}
""",
)

# Move the owner's running timer to a later expiry; nothing else (a timer released meanwhile,
# by a cancel, stays released).
# KEYS: timer.  ARGV: owner, expires (ms), ttl (ms), now (ms)
EXTEND_TIMER = _script(
    """
local current = redis.call('GET', KEYS[1])
if not current or string.sub(current, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return 0 end
local expires = tonumber(string.match(current, '|(%d+)$'))
if not expires or expires <= tonumber(ARGV[4]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
"""
)

# KEYS: timer.  ARGV: owner
RELEASE_TIMER = _script(
    """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)

# KEYS: version.  ARGV: a new version, lifetime (ms)
CURRENT_VERSION = _script(
    """
local version = redis.call('GET', KEYS[1])
if version then return version end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""
)
