-- Count one tracking event, atomically, in one round trip.
-- All keys share the experiment's hash tag (one cluster slot).
--
-- KEYS[1]  meta hash of the experiment
-- KEYS[2]  registry shard set listing the experiment
-- KEYS[3]  variants set
-- KEYS[4]  goals set
-- KEYS[5]  the counter: HyperLogLog (hll) or the counts hash (exact)
-- KEYS[6]  exact only: current de-dup bucket; KEYS[7..] older buckets still inside the window
--
-- ARGV[1]  experiment name          ARGV[2]  variant            ARGV[3]  goal (event)
-- ARGV[4]  counting mode the keys were built for, ARGV[5] its de-dup window
-- ARGV[6]  counting mode for a new experiment, ARGV[7] its de-dup window
-- ARGV[8]  now (unix seconds)
-- ARGV[9]  uuid (hll) or 8-byte digest of goal, variant and uuid (exact)
-- ARGV[10] exact only: field of the counts hash   ARGV[11] expiry (unix seconds) of KEYS[6]
--
-- Returns 1 if the event was new, 0 if a duplicate, or {mode, window} (nothing counted)
-- when the experiment was recorded with another mode or window: the caller rebuilds its
-- keys for those and calls again.

local recorded = redis.call('HMGET', KEYS[1], 'counting', 'window')
local mode, window = recorded[1], recorded[2]
if not mode then
  mode, window = ARGV[6], ARGV[7]
  redis.call('HSET', KEYS[1], 'name', ARGV[1], 'counting', mode, 'window', window,
             'created', ARGV[8])
  redis.call('SADD', KEYS[2], ARGV[1])
end
if mode ~= ARGV[4] or (mode == 'exact' and window ~= ARGV[5]) then
  return {mode, window}
end

redis.call('SADD', KEYS[3], ARGV[2])
if ARGV[3] ~= 'participate' then
  redis.call('SADD', KEYS[4], ARGV[3])
end

if mode == 'hll' then
  return redis.call('PFADD', KEYS[5], ARGV[9])
end

for i = 6, #KEYS do
  if redis.call('SISMEMBER', KEYS[i], ARGV[9]) == 1 then
    return 0
  end
end
redis.call('SADD', KEYS[6], ARGV[9])
redis.call('EXPIREAT', KEYS[6], ARGV[11])
redis.call('HINCRBY', KEYS[5], ARGV[10], 1)
return 1
