-- Admit a namespace, unless it is new and the cap on namespaces is reached.
--
-- KEYS[1]  set of known namespaces
-- ARGV     NamespaceArgv (gimel_core/storage/schema.py): namespace, most (namespaces)
--
-- Returns 1 if the namespace may be used, 0 if refused.

if redis.call('SISMEMBER', KEYS[1], namespace) == 1 then
  return 1
end
if redis.call('SCARD', KEYS[1]) >= most then
  return 0
end
redis.call('SADD', KEYS[1], namespace)
return 1
