-- Bring an experiment counted before history was kept into the current layout; idempotent.
--
-- KEYS[1]  meta hash     KEYS[2]  counter index (hll)
-- KEYS[3..] hll: every HyperLogLog of the experiment (none for exact)
--
-- ARGV[1]  today (UTC day number); ARGV[2..] the counts field of each KEYS[3..]
--
-- Indexes every HyperLogLog (track.lua keeps the index from then on, and snapshots through
-- it), and starts the history today. Returns their counts, in KEYS order.
--
-- META comes from the prelude gimel_core/scripts.py prepends.

local counts = {}
for i = 3, #KEYS do
  redis.call('HSETNX', KEYS[2], ARGV[i - 1], KEYS[i])
  counts[i - 2] = redis.call('PFCOUNT', KEYS[i])
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSETNX', KEYS[1], META.day, ARGV[1])
end
return counts
