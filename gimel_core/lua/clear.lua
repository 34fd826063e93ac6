-- Delete or reset one experiment atomically, or do nothing.
--
-- KEYS[1]  meta hash          KEYS[2]  registry shard set
-- KEYS[3]  variants set       KEYS[4]  goals set
-- KEYS[5..] every counter and de-dup bucket the caller derived from the sets it read
--
-- ARGV[1]  ACTION.delete (everything, and the registry entry) or ACTION.reset (counters only:
--          settings, variant and goal names stay)
-- ARGV[2]  experiment name    ARGV[3]  now (unix seconds), recorded as reset_at
-- ARGV[4]  n, the number of variants the caller read; ARGV[5..4+n] those variants,
--          ARGV[5+n..] the goals it read
--
-- Returns CLEAR.done, CLEAR.missing if the experiment does not exist, or CLEAR.changed
-- (nothing changed) when a variant or goal appeared since the caller read the sets: it would
-- own a key missing from KEYS, so the caller reads again and retries. That is why nothing is
-- ever orphaned. ACTION, CLEAR and META come from the prelude gimel_core/scripts.py prepends.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return CLEAR.missing
end

local n = tonumber(ARGV[4])

local function unchanged(key, first, last)
  if redis.call('SCARD', key) ~= last - first + 1 then
    return false
  end
  for i = first, last do
    if redis.call('SISMEMBER', key, ARGV[i]) == 0 then
      return false
    end
  end
  return true
end

if not unchanged(KEYS[3], 5, 4 + n) or not unchanged(KEYS[4], 5 + n, #ARGV) then
  return CLEAR.changed
end

local first = 5
if ARGV[1] == ACTION.delete then
  redis.call('SREM', KEYS[2], ARGV[2])
  first = 1
else
  redis.call('HSET', KEYS[1], META.reset_at, ARGV[3])
end
for i = first, #KEYS do
  if i ~= 2 then
    redis.call('UNLINK', KEYS[i])
  end
end
return CLEAR.done
