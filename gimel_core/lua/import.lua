-- Import one experiment's counters from the original Gimel's layout; idempotent.
--
-- KEYS[1]  meta hash      KEYS[2]  registry shard set
-- KEYS[3]  variants set   KEYS[4]  goals set
-- KEYS[5]  hll: scratch key for a copied HyperLogLog; exact: the counts hash
-- KEYS[6]  hll: the counter index (counts field -> HyperLogLog key, see track.lua)
-- KEYS[7..] hll only: the HyperLogLog of each imported counter, in ARGV order
--
-- ARGV[1]  mode (hll or exact)    ARGV[2]  experiment name
-- ARGV[3]  now (unix seconds)     ARGV[4]  de-dup window for a new exact experiment
-- ARGV[5..] per counter, in fours: goal, variant, its field of the counts, value:
--          hll: the legacy HyperLogLog's bytes, merged (a union: importing twice is a no-op)
--          exact: the legacy count; only its growth since the last import is added, so a
--                 re-run adds nothing twice and events counted here meanwhile are kept
--
-- PARTICIPATE, META and MODE come from the prelude gimel_core/scripts.py prepends.
--
-- Returns the number of counters imported, or {mode} (nothing written) when the
-- experiment already exists here with another counting mode.

local mode = redis.call('HGET', KEYS[1], META.counting)
if mode and mode ~= ARGV[1] then
  return {mode}
end
if not mode then
  redis.call('HSET', KEYS[1], META.name, ARGV[2], META.counting, ARGV[1], META.window, ARGV[4],
             META.created, ARGV[3], META.day, math.floor(tonumber(ARGV[3]) / 86400))
  redis.call('SADD', KEYS[2], ARGV[2])
end
redis.call('HSET', KEYS[1], META.imported_at, ARGV[3])

local n = 0
for i = 5, #ARGV, 4 do
  local goal, variant, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  n = n + 1
  redis.call('SADD', KEYS[3], variant)
  if goal ~= PARTICIPATE then
    redis.call('SADD', KEYS[4], goal)
  end
  if ARGV[1] == MODE.hll then
    redis.call('SET', KEYS[5], value)
    redis.call('PFMERGE', KEYS[6 + n], KEYS[6 + n], KEYS[5])
    redis.call('DEL', KEYS[5])
    redis.call('HSETNX', KEYS[6], field, KEYS[6 + n])
  else
    local before = tonumber(redis.call('HGET', KEYS[1], META.imported_prefix .. field) or '0')
    redis.call('HINCRBY', KEYS[5], field, tonumber(value) - before)
    redis.call('HSET', KEYS[1], META.imported_prefix .. field, value)
  end
end
return n
