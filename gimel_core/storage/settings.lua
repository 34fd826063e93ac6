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
set_fields(KEYS[1], fields_at)
return 1
