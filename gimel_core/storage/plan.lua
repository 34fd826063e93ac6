-- Declare (or update) an experiment's plan, atomically; creates the experiment if need be.
--
-- KEYS[1]  meta hash          KEYS[2]  registry shard set
-- KEYS[3]  variants set       KEYS[4]  goals set
-- KEYS[5]  history hash       KEYS[6]  counter index (hll)     KEYS[7]  counts hash (exact)
-- KEYS[8]  the de-dup bucket of an exact experiment that remembers uuids for life
-- KEYS[8]  the registry shard's open budget hash (see track.lua), read as KEYS[#KEYS]
--
-- ARGV: the named slots of PlanArgv (gimel_core/storage/schema.py), bound above; new_mode,
-- new_window and new_analysis are for a new experiment. Then, from ARGV[variants_at], the
-- plan's variant_count variants, the number of its goals, the goals, the number of counts
-- fields the plan keeps and those fields (when dropping; else none), and last the meta
-- fields to set, as field, value, ... (an empty value removes the field): the plan and the
-- settings it governs.
--
-- Every variant and goal already counted must be in the plan, or nothing is written and
-- the reply is {0, variants missing, goals missing}. With drop_undeclared = 1, an experiment
-- no plan declared yet (so everything it counted came from public traffic) loses instead the
-- names the plan leaves out, their counters and their history; a declared one never does.
-- Else {1, created}: created is 1 when the experiment did not exist. A declared experiment
-- is registered whatever the caps: they bound what visitors can create, not what the team
-- declares. Declaring takes the experiment out of the open budget, and its keys no longer
-- expire.
--
-- META comes from the prelude (gimel_core/storage/schema.py), create_experiment, set_fields,
-- unbudget and bucket_keys from prelude.lua.

local n = variant_count
local goals_at = variants_at + n + 1  -- after the variants and the goals' count
local g = tonumber(ARGV[goals_at - 1])
local kept_at = goals_at + g + 1  -- after the goals and the kept fields' count
local fields_at = kept_at + tonumber(ARGV[kept_at - 1])

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
local missing_goals = outside(KEYS[4], goals_at, kept_at - 2)
if #missing_variants > 0 or #missing_goals > 0 then
  if drop_undeclared == 0 or redis.call('HEXISTS', KEYS[1], META.plan) == 1 then
    return {0, missing_variants, missing_goals}
  end
  -- Drop what the plan leaves out: names, counters, and their days of history.
  local kept = {}
  for i = kept_at, fields_at - 1 do
    kept[ARGV[i]] = true
  end
  for _, pair in ipairs({{KEYS[3], missing_variants}, {KEYS[4], missing_goals}}) do
    if #pair[2] > 0 then
      redis.call('SREM', pair[1], unpack(pair[2]))
    end
  end
  local index = redis.call('HGETALL', KEYS[6])
  for i = 1, #index, 2 do
    if not kept[index[i]] then
      redis.call('UNLINK', index[i + 1])
      redis.call('HDEL', KEYS[6], index[i])
    end
  end
  for _, field in ipairs(redis.call('HKEYS', KEYS[7])) do
    if not kept[field] then
      redis.call('HDEL', KEYS[7], field)
    end
  end
  local days = redis.call('HGETALL', KEYS[5])
  for i = 1, #days, 2 do
    local counts, changed = cjson.decode(days[i + 1]), false
    for field in pairs(counts) do
      if not kept[field] then
        counts[field], changed = nil, true
      end
    end
    if changed then
      redis.call('HSET', KEYS[5], days[i], cjson.encode(counts))
    end
  end
end

local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  create_experiment(KEYS[1], KEYS[2], experiment, new_mode, new_window, new_analysis, now)
  created = 1
end
set_fields(KEYS[1], fields_at)

-- Out of the open budget, and kept for good: no key of a declared experiment expires.
unbudget(KEYS[#KEYS], KEYS[1])
for _, i in ipairs({1, 3, 4, 5, 6, 7}) do
  redis.call('PERSIST', KEYS[i])
end
for _, key in ipairs(bucket_keys(KEYS[8])) do  -- for life: its records (else no such key)
  redis.call('PERSIST', key)
end
local index = redis.call('HVALS', KEYS[6])
for _, key in ipairs(index) do
  redis.call('PERSIST', key)
end
return {1, created}
