-- Count a list of tracking events of ONE experiment, atomically, in one call.
-- All keys share the experiment's hash tag (one cluster slot).
--
-- KEYS[1]  meta hash of the experiment
-- KEYS[2]  registry shard set listing the experiment
-- KEYS[3]  variants set
-- KEYS[4]  goals set
-- KEYS[5]  history hash: UTC day number -> JSON of the cumulative counts at that day's end
-- KEYS[6]  hll: the counter index (counts field -> HyperLogLog key); exact: the counts hash
-- KEYS[7..] hll: the HyperLogLogs the events count into
--          exact: KEYS[7] the current de-dup bucket, KEYS[8..] older buckets in the window:
--          each the key its sets and count hang from (KEYS[k] .. DEDUP.separator .. index or
--          DEDUP.size), which held the bucket's 8-byte digests before those
--
-- ARGV[1]  experiment name
-- ARGV[2]  counting mode the keys were built for, ARGV[3] its de-dup window
-- ARGV[4]  counting mode for a new experiment, ARGV[5] its de-dup window
-- ARGV[6]  now (unix seconds)      ARGV[7]  exact only: expiry (unix seconds) of KEYS[7]
-- ARGV[8]  most experiments in this registry shard, ARGV[9] most variants, ARGV[10] most
--          goals (caps against a client inventing names without end)
-- ARGV[11] analysis method recorded for a new experiment
-- ARGV[12] registration: REGISTRATION.open counts undeclared experiments (creating them),
--          REGISTRATION.declared only those with a plan
-- ARGV[13] m: hll, the number of HyperLogLogs in KEYS[7..6+m]; ARGV[14..13+m] their fields
--          of the counts (the index's fields); exact: 0
-- ARGV[14+m..] per event: variant, goal, then
--          hll (fours): the uuid, and the index in KEYS of its HyperLogLog
--          exact (fives): the uuid's record (a decimal integer below 2^63: never computed
--          with, Lua's numbers are doubles; its last DEDUP.path_digits digits are its path),
--          the same digest as 8 bytes (as buckets stored it before), its field in the counts
--
-- History: on the first call of a new UTC day, before anything is counted, the counts as
-- they stood at the end of the experiment's last active day are recorded in KEYS[5]: once a
-- day, one PFCOUNT per counter (hll, through the index; those keys share the hash tag) or a
-- copy of the counts hash (exact).
--
-- A declared experiment (its meta hash holds a plan) counts only the variants and goals its
-- plan lists, under no cap: visitors cannot add names to it, and the caps they can fill do not
-- apply to it. An undeclared one is counted only in open registration, under the caps.
--
-- Returns {TRACK.counted, new, dropped_variants, dropped_goals, undeclared}: how many events
-- were new (duplicates count 0), how many were dropped because they would add a variant or a
-- goal past its cap, and how many because the experiment, variant or goal is not declared
-- (in declared registration, an undeclared experiment: every event, nothing written). Or,
-- with nothing written: {TRACK.recorded_otherwise, mode, window} when the
-- experiment was recorded with another mode or window (the caller rebuilds its keys for those
-- and calls again), or {TRACK.shard_full} when a new experiment would pass the cap of its
-- registry shard.
--
-- De-dup (exact): a uuid is new if no bucket of the window holds its record. A bucket's
-- records are spread over 1 + count // DEDUP.load sets by linear hashing on their path (see
-- gimel_core/dedup.py), so that each set stays small enough to be an intset: each
-- DEDUP.load-th record splits one set in two. Every key written gets the current bucket's
-- expiry (ARGV[7]).
--
-- PARTICIPATE, META, MODE, REGISTRATION, TRACK and DEDUP come from the prelude
-- gimel_core/scripts.py prepends.

local recorded = redis.call('HMGET', KEYS[1], META.counting, META.window, META.day, META.plan)
local mode, window, last_day, plan = recorded[1], recorded[2], tonumber(recorded[3]), recorded[4]
local m = tonumber(ARGV[13])
local stride = ARGV[2] == MODE.exact and 5 or 4  -- arguments per event
if not plan and ARGV[12] == REGISTRATION.declared then
  return {TRACK.counted, 0, 0, 0, (#ARGV - 13 - m) / stride}
end
local today = math.floor(tonumber(ARGV[6]) / 86400)
if not mode then
  if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[8]) then
    return {TRACK.shard_full}
  end
  mode, window = ARGV[4], ARGV[5]
  redis.call('HSET', KEYS[1], META.name, ARGV[1], META.counting, mode, META.window, window,
             META.created, ARGV[6], META.analysis, ARGV[11], META.day, today)
  redis.call('SADD', KEYS[2], ARGV[1])
  last_day = today
end
if mode ~= ARGV[2] or (mode == MODE.exact and window ~= ARGV[3]) then
  return {TRACK.recorded_otherwise, mode, window}
end
local exact = mode == MODE.exact

-- (An experiment counted before history was kept has no day until migrate.lua indexed it.)
if last_day and last_day < today then
  local counts, flat = {}, redis.call('HGETALL', KEYS[6])
  for i = 1, #flat, 2 do
    counts[flat[i]] = exact and tonumber(flat[i + 1]) or redis.call('PFCOUNT', flat[i + 1])
  end
  if next(counts) then
    redis.call('HSET', KEYS[5], last_day, cjson.encode(counts))
  end
  redis.call('HSET', KEYS[1], META.day, today)
end


-- Adds a name to a set unless that would pass the cap; false when refused.
local function admit(key, name, cap)
  if redis.call('SISMEMBER', key, name) == 1 then
    return true
  end
  if redis.call('SCARD', key) >= cap then
    return false
  end
  redis.call('SADD', key, name)
  return true
end

-- The plan's names, as sets (a plan is small: decoding it costs microseconds).
local variants, goals
if plan then
  local decoded = cjson.decode(plan)
  variants, goals = {}, {}
  for _, name in ipairs(decoded.variants) do
    variants[name] = true
  end
  for _, goal in ipairs(decoded.goals) do
    goals[goal.name] = true
  end
end

-- exact: the sets of a bucket of `count` records, and the largest power of two not above.
local function shape(count)
  local sets, low = math.min(1 + math.floor(count / DEDUP.load), DEDUP.sets), 1
  while low * 2 <= sets do
    low = low * 2
  end
  return sets, low
end

-- exact: the index of a path's set in a bucket of `count` records (dedup.set_index).
local function set_index(count, path)
  local sets, low = shape(count)
  local index = path % low
  if index < sets - low then
    index = path % (2 * low)
  end
  return index
end

local function path_of(member)
  return tonumber(string.sub(member, -DEDUP.path_digits))
end

local function set_key(k, index)
  return KEYS[k] .. DEDUP.separator .. index
end

local function add_all(key, members)
  for first = 1, #members, 1000 do
    redis.call('SADD', key, unpack(members, first, math.min(first + 999, #members)))
  end
end

-- exact: each bucket's count of records, and whether its set of 8-byte digests from before
-- the sets of integers still lives.
local counts, legacy = {}, {}
if exact then
  local sizes, buckets = {}, {}
  for k = 7, #KEYS do
    sizes[#sizes + 1], buckets[#buckets + 1] = KEYS[k] .. DEDUP.separator .. DEDUP.size, KEYS[k]
  end
  for j, count in ipairs(redis.call('MGET', unpack(sizes))) do
    counts[6 + j] = tonumber(count or '0')
  end
  if redis.call('EXISTS', unpack(buckets)) > 0 then  -- none, a window after the upgrade
    for k = 7, #KEYS do
      legacy[k] = redis.call('EXISTS', KEYS[k]) == 1
    end
  end
end
local written = {}  -- exact: keys of the current bucket written, to expire with it

-- Records a new member in the current bucket, then splits a set if that was a LOAD-th record:
-- set `sets - low` in two, its members whose path has the next bit set moving to `sets`.
local function record(member)
  local before = counts[7]
  local path = path_of(member)
  local into = set_key(7, set_index(before, path))
  redis.call('SADD', into, member)
  written[into] = true
  counts[7] = before + 1
  local sets, low = shape(before)
  if shape(counts[7]) == sets then
    return
  end
  local from, to = set_key(7, sets - low), set_key(7, sets)
  local stay, move = {}, {}
  for _, m in ipairs(redis.call('SMEMBERS', from)) do
    if math.floor(path_of(m) / low) % 2 == 1 then
      move[#move + 1] = m
    else
      stay[#stay + 1] = m
    end
  end
  redis.call('DEL', from)  -- rebuilt: an intset again, should it have grown past one
  add_all(from, stay)
  add_all(to, move)
  written[from], written[to] = true, true
end

local new, dropped_variants, dropped_goals, undeclared = 0, 0, 0, 0
local max_variants, max_goals = tonumber(ARGV[9]), tonumber(ARGV[10])
local used = {}  -- hll: KEYS indexes of the HyperLogLogs counted into
for i = 14 + m, #ARGV, stride do
  local variant, goal, member = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local target = ARGV[i + stride - 1]
  local counted = false
  if plan then
    if variants[variant] and (goal == PARTICIPATE or goals[goal]) then
      redis.call('SADD', KEYS[3], variant)
      if goal ~= PARTICIPATE then
        redis.call('SADD', KEYS[4], goal)
      end
      counted = true
    else
      undeclared = undeclared + 1
    end
  elseif not admit(KEYS[3], variant, max_variants) then
    dropped_variants = dropped_variants + 1
  elseif goal ~= PARTICIPATE and not admit(KEYS[4], goal, max_goals) then
    dropped_goals = dropped_goals + 1
  else
    counted = true
  end
  if counted and not exact then
    local k = tonumber(target)
    used[k] = true
    new = new + redis.call('PFADD', KEYS[k], member)
  elseif counted then
    local digest, seen = ARGV[i + 3], false
    local path = path_of(member)
    for k = 7, #KEYS do
      seen = redis.call('SISMEMBER', set_key(k, set_index(counts[k], path)), member) == 1
        or (legacy[k] and redis.call('SISMEMBER', KEYS[k], digest) == 1)
      if seen then
        break
      end
    end
    if not seen then
      record(member)
      redis.call('HINCRBY', KEYS[6], target, 1)
      new = new + 1
    end
  end
end
-- Index only the HyperLogLogs that counted something: a dropped name leaves no trace.
for k in pairs(used) do
  redis.call('HSETNX', KEYS[6], ARGV[7 + k], KEYS[k])
end
if exact and new > 0 then
  local size = KEYS[7] .. DEDUP.separator .. DEDUP.size
  redis.call('SET', size, counts[7])
  written[size] = true
end
for key in pairs(written) do
  redis.call('EXPIREAT', key, ARGV[7])
end
return {TRACK.counted, new, dropped_variants, dropped_goals, undeclared}
