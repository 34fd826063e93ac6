-- Delete or reset one experiment atomically, or do nothing.
--
-- KEYS[1]  meta hash          KEYS[2]  registry shard set
-- KEYS[3]  variants set       KEYS[4]  goals set
-- KEYS[5]  the registry shard's open budget hash (see track.lua): deleted or reset, the
--          experiment leaves it
-- KEYS[6..] every counter the caller derived from the sets it read, then the bucket_count
--          de-dup buckets that may exist (exact: for life its one bucket, with a window
--          dedup.stored_buckets), last: each removed with its sets and its
--          count, which hang from it (bucket .. DEDUP.separator .. index or DEDUP.size)
--
-- ARGV: the named slots of ClearArgv (gimel_core/storage/schema.py), bound above: action is
-- ACTION.delete (everything, and the registry entry) or ACTION.reset (counters only:
-- settings, variant and goal names stay). Then, from ARGV[names_at], the variant_count
-- variants the caller read, then the goals it read.
--
-- Returns CLEAR.done, CLEAR.missing if the experiment does not exist, or CLEAR.changed
-- (nothing changed) when a variant or goal appeared since the caller read the sets: it would
-- own a key missing from KEYS, so the caller reads again and retries. That is why nothing is
-- ever orphaned. A bucket of n records has sets 0 to n // DEDUP.load (see
-- gimel_core/dedup.py), so its count says which to remove.
--
-- ACTION, CLEAR, DEDUP and META come from the prelude (gimel_core/storage/schema.py),
-- unbudget and bucket_keys from prelude.lua.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return CLEAR.missing
end

local d, n = bucket_count, variant_count

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

if not unchanged(KEYS[3], names_at, names_at + n - 1)
    or not unchanged(KEYS[4], names_at + n, #ARGV) then
  return CLEAR.changed
end


unbudget(KEYS[5], KEYS[1])
local first = 6
if action == ACTION.delete then
  redis.call('SREM', KEYS[2], experiment)
  first = 1
else
  redis.call('HSET', KEYS[1], META.reset_at, now)
end
for i = first, #KEYS do
  if i > #KEYS - d then
    for _, key in ipairs(bucket_keys(KEYS[i])) do
      redis.call('UNLINK', key)
    end
  elseif i ~= 2 and i ~= 5 then
    redis.call('UNLINK', KEYS[i])
  end
end
return CLEAR.done
