-- Change an existing experiment's settings; never creates one.
--
-- KEYS[1]  meta hash
-- ARGV     from ARGV[fields_at]: field, value, field, value, ...  (an empty value removes
--          the field)
--
-- Returns 1 if the experiment exists (and was changed), 0 if not.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for i = fields_at, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
