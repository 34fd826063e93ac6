-- Count a list of tracking events of ONE experiment, atomically, in one call.
-- All keys share the experiment's hash tag (one cluster slot).
--
-- KEYS[1]  meta hash of the experiment
-- KEYS[2]  registry shard set listing the experiment
-- KEYS[3]  variants set
-- KEYS[4]  goals set
-- KEYS[5]  history hash: UTC day number -> JSON of the cumulative counts at that day's end
-- KEYS[6]  hll: the counter index (counts field -> HyperLogLog key); exact: the counts hash
-- KEYS[TRACK_SOURCES]
--          this clock hour's per-source counts: salted source hash -> new events it added
-- KEYS[TRACK_FIRST_COUNTER..]
--          hll: the HyperLogLogs the events count into
--          exact: the current de-dup bucket, then older buckets in the window, then the
--          next one (dedup.lookup_buckets: a call made just before a boundary may run after
--          one made past it): each the key its sets and count hang from
--          (bucket .. DEDUP.separator .. index or DEDUP.size)
--
-- ARGV: the named slots of TrackArgv (gimel_core/storage/schema.py), bound above; then
-- from ARGV[fields_at], hll: the counts field of each HyperLogLog, in KEYS order (`counters`
-- of them); then per event, in fours: variant, goal, then
--          hll: the uuid, and the index in KEYS of its HyperLogLog
--          exact: the uuid's record (a decimal integer below 2^63: never computed with,
--          Lua's numbers are doubles; its last DEDUP.path_digits digits are its path), and
--          its field in the counts
--
-- History: on the first call of a new UTC day, before anything is counted, the counts as
-- they stood at the end of the experiment's last active day are recorded in KEYS[5]: once a
-- day, one PFCOUNT per counter (hll, through the index; those keys share the hash tag) or a
-- copy of the counts hash (exact).
--
-- A declared experiment (its meta hash holds a plan) counts only the variants and goals its
-- plan lists, under no cap: visitors cannot add names to it, and the caps they can fill do not
-- apply to it. An undeclared one is counted only in open registration, under the caps.
--
-- Returns {TRACK.counted, new, dropped_variants, dropped_goals, undeclared, over_budget}: how
-- many events were new (duplicates count 0), how many were dropped because they would add a
-- variant or a goal past its cap, how many because the experiment, variant or goal is not
-- declared (in declared registration, an undeclared experiment: every event, nothing
-- written), and how many because their source had added its budget this hour. Or,
-- with nothing written: {TRACK.recorded_otherwise, mode, window} when the
-- experiment was recorded with another mode or window (the caller rebuilds its keys for those
-- and calls again), or {TRACK.shard_full} when a new experiment would pass the cap of its
-- registry shard.
--
-- De-dup (exact): a uuid is new if no bucket of the window holds its record. A bucket's
-- records are spread over 1 + count // DEDUP.load sets by linear hashing on their path (see
-- gimel_core/dedup.py), so that each set stays small enough to be an intset: each
-- DEDUP.load-th record splits one set in two. Every key written gets the current bucket's
-- expiry (bucket_expiry).
--
-- One source's budget (gimel_core/sources.py): when `source` is not empty, the events are
-- one request's, whose client address hashes to `source`. Once that source has added
-- `source_budget` new events to this experiment this hour, its further events are not
-- counted (over_budget); an event that was not new (a resent one) costs nothing. The hour's
-- counts expire when it ends (source_expiry).
--
-- PARTICIPATE, DAY, META, MODE, REGISTRATION, TRACK, TRACK_SOURCES, TRACK_FIRST_COUNTER and
-- DEDUP come from
-- the prelude (gimel_core/storage/schema.py), create_experiment from prelude.lua.

local recorded = redis.call('HMGET', KEYS[1], META.counting, META.window, META.day, META.plan)
local mode, window, last_day, plan = recorded[1], recorded[2], tonumber(recorded[3]), recorded[4]
local first_event = fields_at + counters
local stride = 4  -- arguments per event
if not plan and registration == REGISTRATION.declared then
  return {TRACK.counted, 0, 0, 0, (#ARGV - first_event + 1) / stride, 0}
end
local today = math.floor(now / DAY)
if not mode then
  if redis.call('SCARD', KEYS[2]) >= max_experiments then
    return {TRACK.shard_full}
  end
  mode, window = new_mode, new_window
  last_day = create_experiment(KEYS[1], KEYS[2], experiment, mode, window, new_analysis, now)
end
if mode ~= keys_mode or (mode == MODE.exact and tonumber(window) ~= keys_window) then
  return {TRACK.recorded_otherwise, mode, window}
end
local exact = mode == MODE.exact

if last_day < today then
  local counts, flat = {}, redis.call('HGETALL', KEYS[6])
  for i = 1, #flat, 2 do
    counts[flat[i]] = exact and tonumber(flat[i + 1]) or redis.call('PFCOUNT', flat[i + 1])
  end
  if next(counts) then
    redis.call('HSET', KEYS[5], last_day, cjson.encode(counts))
  end
  redis.call('HSET', KEYS[1], META.day, today)
end


-- Adds a name to a set unless that would pass the cap; false when refused.
local function admit(key, name, cap)
  if redis.call('SISMEMBER', key, name) == 1 then
    return true
  end
  if redis.call('SCARD', key) >= cap then
    return false
  end
  redis.call('SADD', key, name)
  return true
end

-- The plan's names, as sets (a plan is small: decoding it costs microseconds).
local variants, goals
if plan then
  local decoded = cjson.decode(plan)
  variants, goals = {}, {}
  for _, name in ipairs(decoded.variants) do
    variants[name] = true
  end
  for _, goal in ipairs(decoded.goals) do
    goals[goal.name] = true
  end
end

-- exact: the sets of a bucket of `count` records, and the largest power of two not above.
local function shape(count)
  local sets, low = math.min(1 + math.floor(count / DEDUP.load), DEDUP.sets), 1
  while low * 2 <= sets do
    low = low * 2
  end
  return sets, low
end

-- exact: the index of a path's set in a bucket of `count` records (dedup.set_index).
local function set_index(count, path)
  local sets, low = shape(count)
  local index = path % low
  if index < sets - low then
    index = path % (2 * low)
  end
  return index
end

local function path_of(member)
  return tonumber(string.sub(member, -DEDUP.path_digits))
end

local function set_key(k, index)
  return KEYS[k] .. DEDUP.separator .. index
end

local function add_all(key, members)
  for first = 1, #members, 1000 do
    redis.call('SADD', key, unpack(members, first, math.min(first + 999, #members)))
  end
end

-- exact: each bucket's count of records.
local current = TRACK_FIRST_COUNTER  -- exact: the KEYS index of the current bucket
local counts = {}
if exact then
  local sizes = {}
  for k = current, #KEYS do
    sizes[#sizes + 1] = KEYS[k] .. DEDUP.separator .. DEDUP.size
  end
  for j, count in ipairs(redis.call('MGET', unpack(sizes))) do
    counts[current - 1 + j] = tonumber(count or '0')
  end
end
local written = {}  -- exact: keys of the current bucket written, to expire with it

-- Records a new member in the current bucket, then splits a set if that was a LOAD-th record:
-- set `sets - low` in two, its members whose path has the next bit set moving to `sets`.
local function record(member)
  local before = counts[current]
  local path = path_of(member)
  local into = set_key(current, set_index(before, path))
  redis.call('SADD', into, member)
  written[into] = true
  counts[current] = before + 1
  local sets, low = shape(before)
  if shape(counts[current]) == sets then
    return
  end
  local from, to = set_key(current, sets - low), set_key(current, sets)
  local stay, move = {}, {}
  for _, m in ipairs(redis.call('SMEMBERS', from)) do
    if math.floor(path_of(m) / low) % 2 == 1 then
      move[#move + 1] = m
    else
      stay[#stay + 1] = m
    end
  end
  redis.call('DEL', from)  -- rebuilt: an intset again, should it have grown past one
  add_all(from, stay)
  add_all(to, move)
  written[from], written[to] = true, true
end

-- One source's budget: what it added this hour (nil: not budgeted).
local spent, spent_before, over_budget = nil, 0, 0
if source ~= '' then
  spent = tonumber(redis.call('HGET', KEYS[TRACK_SOURCES], source) or '0')
  spent_before = spent
end

local new, dropped_variants, dropped_goals, undeclared = 0, 0, 0, 0
local used = {}  -- hll: KEYS indexes of the HyperLogLogs counted into
for i = first_event, #ARGV, stride do
  local variant, goal, member, target = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local counted = false
  if plan then
    if variants[variant] and (goal == PARTICIPATE or goals[goal]) then
      redis.call('SADD', KEYS[3], variant)
      if goal ~= PARTICIPATE then
        redis.call('SADD', KEYS[4], goal)
      end
      counted = true
    else
      undeclared = undeclared + 1
    end
  elseif not admit(KEYS[3], variant, max_variants) then
    dropped_variants = dropped_variants + 1
  elseif goal ~= PARTICIPATE and not admit(KEYS[4], goal, max_goals) then
    dropped_goals = dropped_goals + 1
  else
    counted = true
  end
  if counted and spent and spent >= source_budget then  -- one source's budget
    counted, over_budget = false, over_budget + 1
  end
  local new_before = new
  if counted and not exact then
    local k = tonumber(target)
    used[k] = true
    new = new + redis.call('PFADD', KEYS[k], member)
  elseif counted then
    local seen = false
    local path = path_of(member)
    for k = current, #KEYS do
      seen = redis.call('SISMEMBER', set_key(k, set_index(counts[k], path)), member) == 1
      if seen then
        break
      end
    end
    if not seen then
      record(member)
      redis.call('HINCRBY', KEYS[6], target, 1)
      new = new + 1
    end
  end
  if spent then  -- one source's budget: only new events cost
    spent = spent + new - new_before
  end
end
-- Index only the HyperLogLogs that counted something: a dropped name leaves no trace.
for k in pairs(used) do
  redis.call('HSETNX', KEYS[6], ARGV[fields_at + k - TRACK_FIRST_COUNTER], KEYS[k])
end
if exact and new > 0 then
  local size = KEYS[current] .. DEDUP.separator .. DEDUP.size
  redis.call('SET', size, counts[current])
  written[size] = true
end
for key in pairs(written) do
  redis.call('EXPIREAT', key, bucket_expiry)
end
-- One source's budget: its count, kept until the hour ends.
if spent and spent > spent_before then
  redis.call('HSET', KEYS[TRACK_SOURCES], source, spent)
  redis.call('EXPIREAT', KEYS[TRACK_SOURCES], source_expiry)
end
return {TRACK.counted, new, dropped_variants, dropped_goals, undeclared, over_budget}
