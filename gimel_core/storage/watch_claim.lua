-- Take (or keep) a watcher's lease on one experiment, and read what the watcher remembers.
--
-- KEYS[1]  the lease (keys.watching)     KEYS[2]  the alerts hash (keys.alerts)
--
-- ARGV: the named slots of WatchClaimArgv (gimel_core/storage/schema.py), bound above.
--
-- The lease is taken when nobody holds it, or renewed when this watcher (token) already
-- does (a pass of its own that stopped half-way, Redis lost under it). Returns the alerts
-- hash as HGETALL does, or false when another watcher holds the experiment.

local holder = redis.call('GET', KEYS[1])
if holder and holder ~= token then
  return false
end
redis.call('SET', KEYS[1], token, 'PX', lease_ms)
return redis.call('HGETALL', KEYS[2])
