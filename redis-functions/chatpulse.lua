#!lua name=chatpulse
--
-- ChatPulse live state as Redis Functions (ARCHITECTURE §4–5).
--
-- Every function touches only keys of one session, which all carry the
-- overlay id as a hash tag ({U}), or the two keys of one lease (which share a
-- slot), so each call runs on one Redis Cluster slot.
-- The caller passes the time (`now`, ms since the epoch) so that results are
-- reproducible and identical to the in-process store (src/store/memory.rs);
-- TTLs on keys only collect garbage, the decisions compare stored expiry times
-- with `now`.
--
-- The service loads this library with FUNCTION LOAD REPLACE whenever the
-- VERSION below differs from the one loaded. Bump it on every change.

local VERSION = 'main.2-history'

local VALUE_MIN = -100
local VALUE_MAX = 100
local RESET_AFTER_MS = 3600000
local DECAY_MIN = 0.1
local DECAY_MAX = 10
local DECAY_DEFAULT = 0.5
local BUCKET_IDLE_MS = 300000
-- The balance meter (src/domain/meter.rs): its prior c, the largest decayed
-- vote count kept, and the participation window.
local BALANCE_PRIOR = 3
local WEIGHT_MAX = 1000000
local VOTERS_WINDOW_MS = 60000
-- Stream history (src/domain/history/bucket.rs): 10-second buckets, at most
-- this many closed ones waiting per session, and how long history keys
-- outlive the session's last vote or take.
local HISTORY_BUCKET_MS = 10000
local HISTORY_MAX_WAITING = 60
local HISTORY_TTL_MS = 600000
local HISTORY_FIELDS = {'start', 'open', 'close', 'min', 'max', 'for', 'against', 'voters'}

-- A stored string as a finite number, or `default`. Rejects anything that is
-- not plain decimal notation (hex, inf, nan), so garbage never propagates.
local function num(raw, default)
  if type(raw) ~= 'string' or raw:find('[^0-9eE%.%+%-]') then
    return default
  end
  local n = tonumber(raw)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then
    return default
  end
  return n
end

local function clamp(v, lo, hi)
  if v < lo then return lo end
  if v > hi then return hi end
  return v
end

local function sanitize_decay(k)
  if k == nil or k <= 0 then return DECAY_DEFAULT end
  return clamp(k, DECAY_MIN, DECAY_MAX)
end

-- Full precision for doubles (Lua's default number formatting keeps only 14 digits).
local function fmt(n)
  return string.format('%.17g', n)
end

-- The value of a session at `now`: value · e^(−k·Δt/1000), 0 after an hour.
-- A garbage value reads as 0; a garbage time as "reset".
local function decayed(raw_value, raw_last, raw_decay, now)
  local value = clamp(num(raw_value, 0), VALUE_MIN, VALUE_MAX)
  local last = num(raw_last, nil)
  if last == nil then return 0 end
  local k = sanitize_decay(num(raw_decay, nil))
  local elapsed = now - last
  if elapsed <= 0 then return value end
  if elapsed > RESET_AFTER_MS then return 0 end
  return value * math.exp(-k * elapsed / 1000)
end

-- A stored vote count made safe: garbage or negative is 0, capped at WEIGHT_MAX.
local function weight(w)
  if w == nil or w <= 0 then return 0 end
  if w > WEIGHT_MAX then return WEIGHT_MAX end
  return w
end

-- A decayed vote count of the balance meter at `now`, by the rules of
-- decayed() (a garbage count reads as 0, a garbage time as "reset").
local function decayed_weight(raw_weight, raw_last, raw_decay, now)
  local w = weight(num(raw_weight, 0))
  local last = num(raw_last, nil)
  if last == nil then return 0 end
  local k = sanitize_decay(num(raw_decay, nil))
  local elapsed = now - last
  if elapsed <= 0 then return w end
  if elapsed > RESET_AFTER_MS then return 0 end
  return w * math.exp(-k * elapsed / 1000)
end

-- The balance meter's value: 100·(F−A)/(F+A+c).
local function balance(f, a)
  f, a = weight(f), weight(a)
  return clamp(100 * (f - a) / (f + a + BALANCE_PRIOR), VALUE_MIN, VALUE_MAX)
end

-- "SET NX" on an expiry time: true if the key was not alive at `now`.
local function claim(key, now, ttl)
  local until_ms = num(redis.call('GET', key), nil)
  if until_ms ~= nil and until_ms > now then
    return false
  end
  redis.call('SET', key, fmt(now + ttl), 'PX', ttl)
  return true
end

-- KEYS: eventsub:msgid:<message id>
-- ARGV: now, dedup ms
-- Claims an EventSub message id (other than chat, which `vote` claims):
-- 1 the first time, 0 while an earlier claim is alive.
local function claim_message(keys, args)
  if claim(keys[1], tonumber(args[1]), tonumber(args[2])) then return 1 end
  return 0
end

-- Takes one token from the session's bucket. A bucket holding garbage is
-- treated as full: the limiter fails open.
local function take_token(key, now, capacity, per_minute)
  local b = redis.call('HMGET', key, 'tokens', 'last_update')
  local tokens, last = num(b[1], nil), num(b[2], nil)
  if tokens == nil or last == nil or now - last > BUCKET_IDLE_MS then
    tokens, last = capacity, now
  end
  local elapsed = now - last
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(capacity, tokens + elapsed * (per_minute / 60000))
  if now > last then last = now end
  local allowed = tokens >= 1
  if allowed then tokens = tokens - 1 end
  redis.call('HSET', key, 'tokens', fmt(tokens), 'last_update', fmt(last))
  redis.call('PEXPIRE', key, BUCKET_IDLE_MS)
  return allowed
end

-- A closed bucket as one string: its HISTORY_FIELDS joined by commas.
local function history_line(h)
  local parts = {}
  for i = 1, #HISTORY_FIELDS do
    parts[i] = h[i] or ''
  end
  return table.concat(parts, ',')
end

-- Adds a counted vote to the session's current history bucket (the bucket
-- rules of src/domain/history/bucket.rs): the value `before` it and `after`
-- it, its side, its chatter. A vote in a later bucket first queues the
-- current one as closed (at most HISTORY_MAX_WAITING wait).
-- KEYS: history:{U}, history_voters:{U}, history_closed:{U}
local function history_vote(keys, now, chatter, delta, before, after)
  local start = now - (now % HISTORY_BUCKET_MS)
  local h = redis.call('HMGET', keys[1], unpack(HISTORY_FIELDS))
  local current = num(h[1], nil)
  local open, close, lo, hi = before, after, math.min(before, after), math.max(before, after)
  local votes_for, votes_against, voters = 0, 0, 1
  if current ~= nil and current == start then
    open = num(h[2], before)
    lo = math.min(num(h[4], lo), before, after)
    hi = math.max(num(h[5], hi), before, after)
    votes_for, votes_against, voters = num(h[6], 0), num(h[7], 0), num(h[8], 0)
    if redis.call('SADD', keys[2], chatter) == 1 then voters = voters + 1 end
  else
    if current ~= nil then
      redis.call('RPUSH', keys[3], history_line(h))
      redis.call('LTRIM', keys[3], -HISTORY_MAX_WAITING, -1)
    end
    redis.call('DEL', keys[2])
    redis.call('SADD', keys[2], chatter)
  end
  if delta > 0 then votes_for = votes_for + 1 else votes_against = votes_against + 1 end
  redis.call('HSET', keys[1], 'start', fmt(start), 'open', fmt(open), 'close', fmt(close), 'min', fmt(lo),
    'max', fmt(hi), 'for', fmt(votes_for), 'against', fmt(votes_against), 'voters', fmt(voters))
  for i = 1, 3 do
    redis.call('PEXPIRE', keys[i], HISTORY_TTL_MS)
  end
end

-- KEYS: history:{U}, history_voters:{U}, history_closed:{U}
-- ARGV: now, instance id, claim ms
-- Hands out the session's closed history buckets once: those queued, and
-- the current one when it is over at `now`. One instance takes a session's
-- buckets at a time: the caller claims the session for `claim ms`, and
-- while another instance's claim lasts, gets nothing. Returns one string
-- per bucket (history_line), oldest first.
local function history_take(keys, args)
  local now, instance, claim_ms = tonumber(args[1]), args[2], tonumber(args[3])
  local owner = redis.call('HMGET', keys[1], 'owner', 'owner_until')
  local owner_until = num(owner[2], nil)
  if owner[1] and owner[1] ~= instance and owner_until ~= nil and owner_until > now then
    return {}
  end
  local out = redis.call('LRANGE', keys[3], 0, -1)
  redis.call('DEL', keys[3])
  local h = redis.call('HMGET', keys[1], unpack(HISTORY_FIELDS))
  local current = num(h[1], nil)
  if current ~= nil and now >= current + HISTORY_BUCKET_MS then
    out[#out + 1] = history_line(h)
    redis.call('HDEL', keys[1], unpack(HISTORY_FIELDS))
    redis.call('DEL', keys[2])
  end
  redis.call('HSET', keys[1], 'owner', instance, 'owner_until', fmt(now + claim_ms))
  redis.call('PEXPIRE', keys[1], HISTORY_TTL_MS)
  return out
end

-- KEYS: session:{U}, ratelimit:{U}, msgid:{U}:<id>, debounce:{U}:<chatter>,
--       voters:{U}, history:{U}, history_voters:{U}, history_closed:{U}
-- ARGV: now, delta, capacity, refill per minute, debounce ms, dedup ms, chatter,
--       record ('1': the vote counts in history; test votes do not)
-- Applying updates both meters (the classic value, the balance counts F and
-- A) and the participation (voters:{U}: each chatter's last counted vote;
-- the session keeps the count within VOTERS_WINDOW_MS as of now).
-- Returns {outcome} or {'applied', value of the session's model}.
local function vote(keys, args)
  local now, delta = tonumber(args[1]), tonumber(args[2])
  local capacity, per_minute = tonumber(args[3]), tonumber(args[4])
  local debounce_ms, dedup_ms = tonumber(args[5]), tonumber(args[6])
  if redis.call('EXISTS', keys[1]) == 0 then
    return {'no_session'}
  end
  if not claim(keys[3], now, dedup_ms) then
    return {'duplicate'}
  end
  if not claim(keys[4], now, debounce_ms) then
    return {'debounced'}
  end
  if not take_token(keys[2], now, capacity, per_minute) then
    return {'rate_limited'}
  end
  local s = redis.call('HMGET', keys[1], 'value', 'last_update', 'decay', 'for_weight', 'against_weight',
    'model', 'voters_at')
  local value_before = decayed(s[1], s[2], s[3], now)
  local value = clamp(value_before + delta, VALUE_MIN, VALUE_MAX)
  local f = decayed_weight(s[4], s[2], s[3], now)
  local a = decayed_weight(s[5], s[2], s[3], now)
  local balance_before = balance(f, a)
  if delta > 0 then f = weight(f + 1) else a = weight(a + 1) end
  redis.call('ZADD', keys[5], 'GT', now, args[7])
  redis.call('ZREMRANGEBYSCORE', keys[5], '-inf', now - VOTERS_WINDOW_MS)
  redis.call('PEXPIRE', keys[5], VOTERS_WINDOW_MS)
  -- The later of the stored time and now (voters_counted_at in Rust).
  local voters_at = num(s[7], nil)
  if voters_at == nil or now >= voters_at or voters_at - now > VOTERS_WINDOW_MS then voters_at = now end
  redis.call('HSET', keys[1], 'value', fmt(value), 'for_weight', fmt(f), 'against_weight', fmt(a),
    'last_update', fmt(now), 'voters', redis.call('ZCARD', keys[5]), 'voters_at', fmt(voters_at))
  local before, after = value_before, value
  if s[6] == 'balance' then
    before, after = balance_before, balance(f, a)
  end
  if args[8] == '1' and keys[8] ~= nil then
    history_vote({keys[6], keys[7], keys[8]}, now, args[7], delta, before, after)
  end
  return {'applied', fmt(after)}
end

-- Removes the leases in instances:{U} that ended by `now` (an entry holding
-- garbage counts as ended); returns how many unexpired leases remain.
local function prune_leases(key, now)
  local leases = redis.call('HGETALL', key)
  local alive = 0
  for i = 2, #leases, 2 do
    local until_ms = num(leases[i], nil)
    if until_ms ~= nil and until_ms > now then
      alive = alive + 1
    else
      redis.call('HDEL', key, leases[i - 1])
    end
  end
  return alive
end

-- KEYS: session:{U}, instances:{U}
-- ARGV: now, broadcaster id, config json, config version, decay speed,
--       instance id, lease expiry, key ttl ms, meter model
-- Creates the session (value 0) or updates its config, keeping the value; an
-- older config version never overwrites a newer one. Records the lease and
-- drops the ones that ended.
local function activate(keys, args)
  local now, version = tonumber(args[1]), tonumber(args[4])
  if redis.call('EXISTS', keys[1]) == 0 then
    redis.call('HSET', keys[1], 'value', '0', 'for_weight', '0', 'against_weight', '0',
      'last_update', fmt(now), 'status', 'active')
  end
  local stored = num(redis.call('HGET', keys[1], 'config_version'), nil)
  if stored == nil or version >= stored then
    redis.call('HSET', keys[1], 'broadcaster_user_id', args[2], 'config', args[3],
      'config_version', args[4], 'decay', args[5], 'model', args[9])
  end
  redis.call('HSET', keys[2], args[6], args[7])
  prune_leases(keys[2], now)
  redis.call('PEXPIRE', keys[1], args[8])
  redis.call('PEXPIRE', keys[2], args[8])
  return 1
end

-- KEYS: session:{U}, instances:{U}
-- ARGV: instance id, lease expiry, key ttl ms, now
-- Extends this instance's lease and the keys' lifetime, and drops the leases
-- that ended (a crashed instance's). Returns 0 when the session no longer
-- exists (the caller re-activates it).
local function renew(keys, args)
  if redis.call('EXISTS', keys[1]) == 0 then
    return 0
  end
  redis.call('HSET', keys[2], args[1], args[2])
  prune_leases(keys[2], tonumber(args[4]))
  redis.call('PEXPIRE', keys[1], args[3])
  redis.call('PEXPIRE', keys[2], args[3])
  return 1
end

-- KEYS: for each session in turn: session:{U}, instances:{U}, broadcaster:<id>
--       (keys of many slots: a standalone Redis only)
-- ARGV: instance id, lease expiry, key ttl ms, now, then each session's
--       overlay id
-- `renew` for many sessions in one call, with each channel mapping set again
-- (for a live session). Returns 1 or 0 per session (0: gone; the caller
-- re-activates it).
local function renew_many(keys, args)
  local out = {}
  local now = tonumber(args[4])
  for i = 1, #keys / 3 do
    local session, instances, mapping = keys[3 * i - 2], keys[3 * i - 1], keys[3 * i]
    if redis.call('EXISTS', session) == 0 then
      out[i] = 0
    else
      redis.call('HSET', instances, args[1], args[2])
      prune_leases(instances, now)
      redis.call('PEXPIRE', session, args[3])
      redis.call('PEXPIRE', instances, args[3])
      redis.call('SET', mapping, args[4 + i], 'PX', args[3])
      out[i] = 1
    end
  end
  return out
end

-- KEYS: session:{U}, ratelimit:{U}, instances:{U}
-- ARGV: instance id, now
-- Drops this instance's lease and the ones that ended; when no unexpired
-- lease remains, deletes the session. Returns 1 if the session was deleted.
local function release(keys, args)
  redis.call('HDEL', keys[3], args[1])
  if prune_leases(keys[3], tonumber(args[2])) > 0 then
    return 0
  end
  redis.call('DEL', keys[1], keys[2], keys[3])
  return 1
end

-- KEYS: {instances}:heartbeat, {instances}:held:<instance id>
-- ARGV: instance id, now
-- Forgets an instance whose heartbeat ended by `now` (its sessions were
-- released by the caller): its heartbeat entry and its list of sessions.
-- Returns 0, keeping both, when the instance beat again meanwhile.
local function forget_instance(keys, args)
  local until_ms = num(redis.call('HGET', keys[1], args[1]), nil)
  if until_ms ~= nil and until_ms > tonumber(args[2]) then
    return 0
  end
  redis.call('HDEL', keys[1], args[1])
  redis.call('DEL', keys[2])
  return 1
end

-- Both meters at the centre, as of `now`.
local function centre(key, now)
  redis.call('HSET', key, 'value', '0', 'for_weight', '0', 'against_weight', '0', 'last_update', fmt(now))
end

-- KEYS: session:{U}   ARGV: now
-- Centres the bar. Returns 0 when the session does not exist.
local function reset(keys, args)
  if redis.call('EXISTS', keys[1]) == 0 then
    return 0
  end
  centre(keys[1], tonumber(args[1]))
  return 1
end

-- KEYS: session:{U}   ARGV: status ('live' | 'offline' | 'active' | 'disconnected'), now
-- Records the session's status; going live centres the bar (only when the
-- session was not live already: a redelivered stream.online must not wipe a
-- running stream's bar), any other status keeps the value. Returns 0 when
-- the session does not exist.
local function set_status(keys, args)
  if redis.call('EXISTS', keys[1]) == 0 then
    return 0
  end
  local was = redis.call('HGET', keys[1], 'status')
  redis.call('HSET', keys[1], 'status', args[1])
  if args[1] == 'live' and was ~= 'live' then
    centre(keys[1], tonumber(args[2]))
  end
  return 1
end

-- KEYS: broadcaster:<id>   ARGV: overlay id
-- Deletes the channel mapping only if it still points at this overlay.
local function unmap(keys, args)
  if redis.call('GET', keys[1]) == args[1] then
    redis.call('DEL', keys[1])
    return 1
  end
  return 0
end

-- KEYS: the lease key (e.g. cleanup:leader: a string, the holder's instance
--       id) and its expiry key (e.g. {cleanup:leader}:until: the lease's end,
--       ms since the epoch; same slot)
-- A lease written by library version 9 or older is one hash (instance,
-- until): it is rewritten in this form, keeping its holder, end and expiry.
local function upgrade_lease(keys)
  if redis.call('TYPE', keys[1])['ok'] ~= 'hash' then
    return
  end
  local held = redis.call('HMGET', keys[1], 'instance', 'until')
  local pttl = redis.call('PTTL', keys[1])
  redis.call('DEL', keys[1])
  if held[1] and held[2] then
    if pttl > 0 then
      redis.call('SET', keys[1], held[1], 'PX', pttl)
      redis.call('SET', keys[2], held[2], 'PX', pttl)
    else
      redis.call('SET', keys[1], held[1])
      redis.call('SET', keys[2], held[2])
    end
  end
end

-- KEYS: the lease key, its expiry key (see upgrade_lease)
-- ARGV: instance id, now, lease ttl ms, key ttl ms
-- Leader election: takes the lease when nobody holds it or the holder's lease
-- expired at `now`, extends it when this instance already holds it. Returns 1
-- if this instance leads after the call.
local function lead(keys, args)
  local instance, now, ttl = args[1], tonumber(args[2]), tonumber(args[3])
  upgrade_lease(keys)
  local holder = redis.call('GET', keys[1])
  local until_ms = num(redis.call('GET', keys[2]), nil)
  if holder and holder ~= instance and until_ms ~= nil and until_ms > now then
    return 0
  end
  redis.call('SET', keys[1], instance, 'PX', args[4])
  redis.call('SET', keys[2], fmt(now + ttl), 'PX', args[4])
  return 1
end

-- KEYS: the lease key, its expiry key   ARGV: instance id
-- Releases the lease only if this instance holds it. Returns 1 if released.
local function resign(keys, args)
  upgrade_lease(keys)
  if redis.call('GET', keys[1]) == args[1] then
    redis.call('DEL', keys[1], keys[2])
    return 1
  end
  return 0
end

-- The fields a read returns per session (src/store/redis/mod.rs READ_FIELDS).
local READ_FIELDS = {'value', 'last_update', 'decay', 'status', 'model', 'for_weight', 'against_weight',
  'voters', 'voters_at'}

-- KEYS: session:{U} of many sessions (one node: a standalone Redis)
-- Returns the READ_FIELDS of each key in order (nil for a missing session or
-- field); the caller decays, like the pipelined HMGETs a cluster gets. One
-- reply instead of one per session.
local function read(keys, args)
  local out = {}
  local n = #READ_FIELDS
  for i = 1, #keys do
    local f = redis.call('HMGET', keys[i], unpack(READ_FIELDS))
    for j = 1, n do
      out[(i - 1) * n + j] = f[j]
    end
  end
  return out
end

redis.register_function{function_name = 'chatpulse_read', callback = read, flags = {'no-writes'}}
redis.register_function{function_name = 'chatpulse_version', callback = function() return VERSION end,
  flags = {'no-writes'}}
redis.register_function('chatpulse_vote', vote)
redis.register_function('chatpulse_claim_message', claim_message)
redis.register_function('chatpulse_activate', activate)
redis.register_function('chatpulse_renew', renew)
redis.register_function('chatpulse_renew_many', renew_many)
redis.register_function('chatpulse_release', release)
redis.register_function('chatpulse_forget_instance', forget_instance)
redis.register_function('chatpulse_unmap', unmap)
redis.register_function('chatpulse_reset', reset)
redis.register_function('chatpulse_status', set_status)
redis.register_function('chatpulse_lead', lead)
redis.register_function('chatpulse_history_take', history_take)
redis.register_function('chatpulse_resign', resign)
