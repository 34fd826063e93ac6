-- Admit a namespace, unless it is new and the cap on namespaces is reached.
--
-- KEYS[1]  set of known namespaces
-- ARGV[1]  namespace      ARGV[2]  most namespaces
--
-- Returns 1 if the namespace may be used, 0 if refused.

if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return 1
end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
