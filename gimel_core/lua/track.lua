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
--          exact: KEYS[7] the current de-dup bucket, KEYS[8..] older buckets in the window
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
-- ARGV[14+m..] per event, in fours: variant, goal, then
--          hll: the uuid, and the index in KEYS of its HyperLogLog
--          exact: an 8-byte digest of goal, variant and uuid, and its field in the counts hash
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
-- PARTICIPATE, META, MODE, REGISTRATION and TRACK come from the prelude gimel_core/scripts.py prepends.

local recorded = redis.call('HMGET', KEYS[1], META.counting, META.window, META.day, META.plan)
local mode, window, last_day, plan = recorded[1], recorded[2], tonumber(recorded[3]), recorded[4]
local m = tonumber(ARGV[13])
if not plan and ARGV[12] == REGISTRATION.declared then
  return {TRACK.counted, 0, 0, 0, (#ARGV - 13 - m) / 4}
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

local new, dropped_variants, dropped_goals, undeclared = 0, 0, 0, 0
local max_variants, max_goals = tonumber(ARGV[9]), tonumber(ARGV[10])
local used = {}  -- hll: KEYS indexes of the HyperLogLogs counted into
for i = 14 + m, #ARGV, 4 do
  local variant, goal, member, target = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
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
    local seen = false
    for k = 7, #KEYS do
      if redis.call('SISMEMBER', KEYS[k], member) == 1 then
        seen = true
        break
      end
    end
    if not seen then
      redis.call('SADD', KEYS[7], member)
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
  redis.call('EXPIREAT', KEYS[7], ARGV[7])
end
return {TRACK.counted, new, dropped_variants, dropped_goals, undeclared}
