-- Declare (or update) an experiment's plan, atomically; creates the experiment if need be.
--
-- KEYS[1]  meta hash          KEYS[2]  registry shard set
-- KEYS[3]  variants set       KEYS[4]  goals set
--
-- ARGV: the named slots of PlanArgv (gimel_core/storage/schema.py), bound above; new_mode,
-- new_window and new_analysis are for a new experiment. Then, from ARGV[variants_at], the
-- plan's variant_count variants, the number of its goals, the goals, and last the meta
-- fields to set, as field, value, ... (an empty value removes the field): the plan and the
-- settings it governs.
--
-- Every variant and goal already counted must be in the plan, or nothing is written and
-- the reply is {0, variants missing, goals missing}. Else {1, created}: created is 1 when the
-- experiment did not exist. A declared experiment is registered whatever the caps: they
-- bound what visitors can create, not what the team declares.
--
-- META comes from the prelude (gimel_core/storage/schema.py), create_experiment from
-- prelude.lua.

local n = variant_count
local goals_at = variants_at + n + 1  -- after the variants and the goals' count
local g = tonumber(ARGV[goals_at - 1])
local fields_at = goals_at + g

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

local missing_variants = outside(KEYS[3], variants_at, goals_at - 2)
local missing_goals = outside(KEYS[4], goals_at, fields_at - 1)
if #missing_variants > 0 or #missing_goals > 0 then
  return {0, missing_variants, missing_goals}
end

local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  create_experiment(KEYS[1], KEYS[2], experiment, new_mode, new_window, new_analysis, now)
  created = 1
end
set_fields(KEYS[1], fields_at)
return {1, created}
