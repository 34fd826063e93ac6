-- Count a list of tracking events of ONE experiment, atomically, in one call.
-- All keys share the experiment's hash tag (one cluster slot).
--
-- KEYS[1]  meta hash of the experiment
-- KEYS[2]  registry shard set listing the experiment
-- KEYS[3]  variants set
-- KEYS[4]  goals set
-- KEYS[5..] hll: the HyperLogLogs the events count into
--          exact: KEYS[5] the counts hash, KEYS[6] the current de-dup bucket, KEYS[7..]
--          older buckets still inside the window
--
-- ARGV[1]  experiment name
-- ARGV[2]  counting mode the keys were built for, ARGV[3] its de-dup window
-- ARGV[4]  counting mode for a new experiment, ARGV[5] its de-dup window
-- ARGV[6]  now (unix seconds)      ARGV[7]  exact only: expiry (unix seconds) of KEYS[6]
-- ARGV[8]  most experiments in this registry shard, ARGV[9] most variants, ARGV[10] most
--          goals (caps against a client inventing names without end)
-- ARGV[11..] per event, in fours: variant, goal, then
--          hll: the uuid, and the index in KEYS of its HyperLogLog
--          exact: an 8-byte digest of goal, variant and uuid, and its field in the counts hash
--
-- Returns {TRACK.counted, new, dropped_variants, dropped_goals}: how many events were new
-- (duplicates count 0), and how many were dropped because they would add a variant or a goal
-- past its cap. Or, with nothing written: {TRACK.recorded_otherwise, mode, window} when the
-- experiment was recorded with another mode or window (the caller rebuilds its keys for those
-- and calls again), or {TRACK.shard_full} when a new experiment would pass the cap of its
-- registry shard.
--
-- PARTICIPATE, META, MODE and TRACK come from the prelude gimel_core/scripts.py prepends.

local recorded = redis.call('HMGET', KEYS[1], META.counting, META.window)
local mode, window = recorded[1], recorded[2]
if not mode then
  if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[8]) then
    return {TRACK.shard_full}
  end
  mode, window = ARGV[4], ARGV[5]
  redis.call('HSET', KEYS[1], META.name, ARGV[1], META.counting, mode, META.window, window,
             META.created, ARGV[6])
  redis.call('SADD', KEYS[2], ARGV[1])
end
if mode ~= ARGV[2] or (mode == MODE.exact and window ~= ARGV[3]) then
  return {TRACK.recorded_otherwise, mode, window}
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

local new, dropped_variants, dropped_goals = 0, 0, 0
local exact = mode == MODE.exact
local max_variants, max_goals = tonumber(ARGV[9]), tonumber(ARGV[10])
for i = 11, #ARGV, 4 do
  local variant, goal, member, target = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if not admit(KEYS[3], variant, max_variants) then
    dropped_variants = dropped_variants + 1
  elseif goal ~= PARTICIPATE and not admit(KEYS[4], goal, max_goals) then
    dropped_goals = dropped_goals + 1
  elseif not exact then
    new = new + redis.call('PFADD', KEYS[tonumber(target)], member)
  else
    local seen = false
    for k = 6, #KEYS do
      if redis.call('SISMEMBER', KEYS[k], member) == 1 then
        seen = true
        break
      end
    end
    if not seen then
      redis.call('SADD', KEYS[6], member)
      redis.call('HINCRBY', KEYS[5], target, 1)
      new = new + 1
    end
  end
end
if exact and new > 0 then
  redis.call('EXPIREAT', KEYS[6], ARGV[7])
end
return {TRACK.counted, new, dropped_variants, dropped_goals}
