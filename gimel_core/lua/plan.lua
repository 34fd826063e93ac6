-- Declare (or update) an experiment's plan, atomically; creates the experiment if need be.
--
-- KEYS[1]  meta hash          KEYS[2]  registry shard set
-- KEYS[3]  variants set       KEYS[4]  goals set
--
-- ARGV[1]  experiment name
-- ARGV[2]  counting mode, ARGV[3] de-dup window, ARGV[4] analysis: for a new experiment
-- ARGV[5]  now (unix seconds)
-- ARGV[6]  n, the number of the plan's variants; ARGV[7..6+n] the variants, then
--          ARGV[7+n] g, the number of its goals, ARGV[8+n..7+n+g] the goals
-- ARGV[8+n+g..] meta field, value, ... to set (an empty value removes the field): the plan
--          and the settings it governs
--
-- Every variant and goal already counted must be in the plan, or nothing is written and
-- the reply is {0, variants missing, goals missing}. Else {1, created}: created is 1 when the
-- experiment did not exist. A declared experiment is registered whatever the caps: they
-- bound what visitors can create, not what the team declares.
--
-- META comes from the prelude gimel_core/scripts.py prepends.

local n = tonumber(ARGV[6])
local g = tonumber(ARGV[7 + n])

local function outside(key, first, last)
  local listed, missing = {}, {}
  for i = first, last do
    listed[ARGV[i]] = true
  end
  for _, name in ipairs(redis.call('SMEMBERS', key)) do
    if not listed[name] then
      missing[#missing + 1] = name
    end
  end
  table.sort(missing)
  return missing
end

local missing_variants = outside(KEYS[3], 7, 6 + n)
local missing_goals = outside(KEYS[4], 8 + n, 7 + n + g)
if #missing_variants > 0 or #missing_goals > 0 then
  return {0, missing_variants, missing_goals}
end

local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  local now = tonumber(ARGV[5])
  redis.call('HSET', KEYS[1], META.name, ARGV[1], META.counting, ARGV[2], META.window, ARGV[3],
             META.created, now, META.analysis, ARGV[4], META.day, math.floor(now / 86400))
  redis.call('SADD', KEYS[2], ARGV[1])
  created = 1
end
for i = 8 + n + g, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return {1, created}
