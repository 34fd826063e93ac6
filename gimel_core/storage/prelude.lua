-- The functions scripts share, after the generated names (gimel_core/storage/schema.py).

-- Records a new experiment: its meta hash (what it counts with, since when, its analysis)
-- and its name in the registry shard. Returns today's UTC day number, which starts its
-- history. `now` is unix seconds, `window` the de-dup window (seconds).
local function create_experiment(meta, registry, name, mode, window, analysis, now)
  local today = math.floor(now / DAY)
  redis.call('HSET', meta, META.name, name, META.counting, mode, META.window, window,
             META.created, now, META.analysis, analysis, META.day, today)
  redis.call('SADD', registry, name)
  return today
end

-- Takes an experiment (its meta key) out of its registry shard's open budget (track.lua):
-- declared, deleted or reset, it no longer holds what was charged. A budget left empty goes.
local function unbudget(budget, meta)
  local entry = redis.call('HGET', budget, meta)
  if entry then
    redis.call('HDEL', budget, meta)
    local total = redis.call('HINCRBY', budget, OPEN.total, -tonumber(string.match(entry, '^%d+')))
    if total <= 0 and redis.call('HLEN', budget) <= 2 then  -- only its total and pruned
      redis.call('DEL', budget)
    end
  end
end

-- Sets meta fields from ARGV[first..] (field, value, field, value, ...); an empty value
-- removes its field. What a plan and a settings change write.
local function set_fields(meta, first)
  for i = first, #ARGV, 2 do
    if ARGV[i + 1] == '' then
      redis.call('HDEL', meta, ARGV[i])
    else
      redis.call('HSET', meta, ARGV[i], ARGV[i + 1])
    end
  end
end

-- Every key of a de-dup bucket (gimel_core/dedup.py): its sets, which its count of records
-- says, then that count. Nothing is stored at the bucket's own key.
local function bucket_keys(bucket)
  local size = bucket .. DEDUP.separator .. DEDUP.size
  local count = tonumber(redis.call('GET', size) or '0')
  local found = {}
  for index = 0, math.min(math.floor(count / DEDUP.load), DEDUP.sets - 1) do
    found[#found + 1] = bucket .. DEDUP.separator .. index
  end
  found[#found + 1] = size
  return found
end
