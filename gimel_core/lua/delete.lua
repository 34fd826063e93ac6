-- Delete one experiment atomically: its data keys and its registry entry, or nothing.
--
-- KEYS[1]  meta hash          KEYS[2]  registry shard set
-- KEYS[3]  variants set       KEYS[4]  goals set
-- KEYS[5..] every counter and de-dup bucket the caller derived from the sets it read
--
-- ARGV[1]  experiment name
-- ARGV[2]  n, the number of variants the caller read; ARGV[3..2+n] those variants,
--          ARGV[3+n..] the goals it read
--
-- Returns 1 if the experiment existed, 0 if not, or -1 (nothing deleted) when a variant or
-- goal appeared since the caller read the sets: it would own a key missing from KEYS, so
-- the caller reads again and retries. That is what makes the delete leave no orphan.

local n = tonumber(ARGV[2])

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

if not unchanged(KEYS[3], 3, 2 + n) or not unchanged(KEYS[4], 3 + n, #ARGV) then
  return -1
end

local existed = redis.call('EXISTS', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
for i = 1, #KEYS do
  if i ~= 2 then
    redis.call('UNLINK', KEYS[i])
  end
end
return existed
