-- Save what a watcher found and did for one experiment, only while its lease holds.
--
-- KEYS[1]  the lease (keys.watching)     KEYS[2]  the alerts hash (keys.alerts)
-- KEYS[3]  the delivery log (keys.deliveries)     KEYS[4]  the meta hash
--
-- ARGV: the named slots of WatchSaveArgv (gimel_core/storage/schema.py), bound above. From
-- ARGV[fields_at]: set_count field, value pairs set in the alerts hash, then delete_count of
-- its fields deleted, then the delivery records pushed on the log (oldest first), which
-- keeps the log_most newest.
--
-- Returns WATCH.saved; WATCH.lost (nothing written) when the lease is no longer token: another
-- watcher holds the experiment now, and anything this one would write it decides afresh;
-- WATCH.changed (nothing written) when the experiment was deleted or reset since it was read
-- (its epoch, reset_at else created, is not epoch), so no alert of its past comes back.

if redis.call('GET', KEYS[1]) ~= token then
  return WATCH.lost
end
local stored = redis.call('HMGET', KEYS[4], META.reset_at, META.created)
if (stored[1] or stored[2] or '') ~= epoch then
  return WATCH.changed
end
local i = fields_at
if set_count > 0 then
  local items = {}
  for j = i, i + 2 * set_count - 1 do
    items[#items + 1] = ARGV[j]
  end
  redis.call('HSET', KEYS[2], unpack(items))
  i = i + 2 * set_count
end
if delete_count > 0 then
  local fields = {}
  for j = i, i + delete_count - 1 do
    fields[#fields + 1] = ARGV[j]
  end
  redis.call('HDEL', KEYS[2], unpack(fields))
  i = i + delete_count
end
if i <= #ARGV then
  for j = i, #ARGV do
    redis.call('LPUSH', KEYS[3], ARGV[j])
  end
  redis.call('LTRIM', KEYS[3], 0, log_most - 1)
end
if release == 1 then
  redis.call('DEL', KEYS[1])
end
return WATCH.saved
