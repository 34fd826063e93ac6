-- Import one experiment's counters from the original Gimel's layout; idempotent.
--
-- KEYS[1]  meta hash      KEYS[2]  registry shard set
-- KEYS[3]  variants set   KEYS[4]  goals set
-- KEYS[5]  hll: scratch key for a copied HyperLogLog; exact: the counts hash
-- KEYS[6]  hll: the counter index (counts field -> HyperLogLog key, see track.lua)
-- KEYS[7..] hll only: the HyperLogLog of each imported counter, in ARGV order
--
-- ARGV: the named slots of ImportArgv (gimel_core/storage/schema.py), bound above: mode (hll
-- or exact), then new_window and new_analysis for an experiment the import creates. Then,
-- from ARGV[counters_at], per counter, in fours: goal, variant, its field of the counts, value:
--          hll: the legacy HyperLogLog's bytes, merged (a union: importing twice is a no-op)
--          exact: the legacy count; only its growth since the last import is added, so a
--                 re-run adds nothing twice and events counted here meanwhile are kept
--
-- Returns the number of counters imported, or {mode} (nothing written) when the
-- experiment already exists here with another counting mode.
--
-- PARTICIPATE, META and MODE come from the prelude (gimel_core/storage/schema.py),
-- create_experiment from prelude.lua.

local recorded = redis.call('HGET', KEYS[1], META.counting)
if recorded and recorded ~= mode then
  return {recorded}
end
if not recorded then
  create_experiment(KEYS[1], KEYS[2], experiment, mode, new_window, new_analysis, now)
end
redis.call('HSET', KEYS[1], META.imported_at, now)

local n = 0
for i = counters_at, #ARGV, 4 do
  local goal, variant, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  n = n + 1
  redis.call('SADD', KEYS[3], variant)
  if goal ~= PARTICIPATE then
    redis.call('SADD', KEYS[4], goal)
  end
  if mode == MODE.hll then
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
