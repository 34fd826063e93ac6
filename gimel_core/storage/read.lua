-- Read one experiment whole, in one call: what results and history are computed from.
--
-- KEYS[1]  meta hash     KEYS[2]  variants set     KEYS[3]  goals set
-- KEYS[4]  history hash  KEYS[5]  counter index (hll)  KEYS[6]  counts hash (exact)
--
-- Returns the JSON array [meta, variants, goals, history, counts]: the meta hash, the two
-- sets and the history hash as flat lists, and the counts as a flat list of field, count:
-- exact, the counts hash; hll, one PFCOUNT per HyperLogLog of the index (their keys share
-- the hash tag). An empty list is encoded as {}.
-- A counter missing from the index has counted nothing since the experiment was indexed.
--
-- META and MODE come from the prelude (gimel_core/storage/schema.py).

local meta = redis.call('HGETALL', KEYS[1])
local mode
for i = 1, #meta, 2 do
  if meta[i] == META.counting then
    mode = meta[i + 1]
  end
end
local counts = {}
if mode == MODE.exact then
  counts = redis.call('HGETALL', KEYS[6])
elseif mode == MODE.hll then
  local index = redis.call('HGETALL', KEYS[5])
  for i = 1, #index, 2 do
    counts[i] = index[i]
    counts[i + 1] = redis.call('PFCOUNT', index[i + 1])
  end
end
-- One JSON string rather than nested replies: the client parses it in one C call.
return cjson.encode({meta, redis.call('SMEMBERS', KEYS[2]), redis.call('SMEMBERS', KEYS[3]),
                     redis.call('HGETALL', KEYS[4]), counts})
