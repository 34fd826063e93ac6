-- Read every HyperLogLog count of one experiment in one call (reading results).
--
-- KEYS[1..] the experiment's HyperLogLogs, in the caller's order
--
-- Returns their cardinalities, in the same order (0 for a missing key).

local counts = {}
for i = 1, #KEYS do
  counts[i] = redis.call('PFCOUNT', KEYS[i])
end
return counts
