-- Count a list of tracking events of ONE experiment, atomically, in one call.
-- All keys share the experiment's hash tag (one cluster slot).
--
-- KEYS[1]  meta hash of the experiment
-- KEYS[2]  registry shard set listing the experiment
-- KEYS[3]  variants set
-- KEYS[4]  goals set
-- KEYS[5]  history hash: UTC day number -> JSON of the cumulative counts at that day's end
-- KEYS[6]  hll: the counter index (counts field -> HyperLogLog key); exact: the counts hash
-- KEYS[7]  the registry shard's open budget hash (keys.open_budget; see below)
-- KEYS[TRACK_SOURCES]
--          this clock hour's per-source counts of the 256th of sources holding `source`
--          (keys.sources): salted source hash -> new events it added
-- KEYS[TRACK_FIRST_COUNTER..]
--          hll: the HyperLogLogs the events count into
--          exact: for life (keys_window 0), its one de-dup bucket; with a window, the
--          current bucket, then older buckets in the window, then the next one
--          (dedup.lookup_buckets: a call made just before a boundary may run after one made
--          past it): each the key its sets and count hang from
--          (bucket .. DEDUP.separator .. index or DEDUP.size)
--
-- ARGV: the named slots of TrackArgv (gimel_core/storage/schema.py), bound above; then
-- from ARGV[fields_at], hll: the counts field of each HyperLogLog, in KEYS order (`counters`
-- of them); then per event, TRACK_STRIDE slots (TrackEventArgv): variant, goal, then
--          hll: the uuid, and the index in KEYS of its HyperLogLog
--          exact: the uuid's record (a decimal integer below 2^63: never computed with,
--          Lua's numbers are doubles; its last DEDUP.path_digits digits are its path), and
--          its field in the counts
--          then its numbers: `value,total,covariate` (its value, the visitor's total before
--          it, its covariate), each decimal text checked finite and bounded by the caller, or
--          empty; the whole slot empty when it carries none
--
-- Sums (exact, a plan declaring a value goal or a covariate): a new event (after de-dup, so
-- a re-sent one adds nothing) adds to fields of the counts hash beside its count (the count's
-- field followed by MOMENT.*): participate adds the clipped covariate c (0 when not sent) to
-- x and c^2 to x2; a value goal the change of the visitor's capped total to y, of its square
-- to y2 and c times the first to xy; a binary goal c to xy. An event whose numbers do not fit
-- the plan (OFF_PLAN) is answered, not counted, and writes nothing.
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
-- Returns, as one text of numbers (and the mode) separated by spaces,
-- {TRACK.counted, new, dropped_variants, dropped_goals, undeclared, over_source,
-- over_open, over_records[, off plan...]}: how many events were new (duplicates count 0), how
-- many were dropped because they would add a variant or a goal past its cap, how many because the
-- experiment, variant or goal is not declared (in declared registration, an undeclared
-- experiment: every event, nothing written), how many because their source had added its
-- budget this hour, how many because what they would add does not fit the open budget, and
-- how many new uuids because the experiment holds max_records already (for life; with a
-- window, because the current bucket holds a (DEDUP.buckets + 1)th of it), then, if any
-- event's numbers did not fit the plan, how many for each OFF_PLAN reason, in its order. Or,
-- with nothing written: {TRACK.recorded_otherwise, mode, window} when the
-- experiment was recorded with another mode or window (the caller rebuilds its keys for those
-- and calls again), or {TRACK.shard_full} when a new experiment would pass the cap of its
-- registry shard.
--
-- De-dup (exact): a uuid is new if no bucket in KEYS holds its record. A bucket's
-- records are spread over 1 + count // DEDUP.load sets by linear hashing on their path (see
-- gimel_core/dedup.py), so that each set stays small enough to be an intset: each
-- DEDUP.load-th record splits one set in two. With a window, every key written gets the
-- current bucket's expiry (bucket_expiry). For life, a declared experiment's records never
-- expire; an undeclared one's expire with its other keys (idle expiry, below).
--
-- One source's budget (gimel_core/sources.py): when `source` is not empty, the events are
-- one request's, whose client address hashes to `source`. Once that source has added
-- `source_budget` new events to this experiment this hour, its further events are not
-- counted (over_source), and add no name nor byte to an undeclared experiment; an event that
-- was not new (a resent one) costs nothing. The hour's counts expire when it ends
-- (source_expiry).
--
-- Open budget and idle expiry (undeclared experiments only; a declared one pays neither):
-- whatever an event would add (the experiment, a variant, a goal, a counter, a day of
-- history) is charged to the registry shard's budget hash, KEYS[7], in bytes (its names'
-- lengths plus COST), and dropped if the shard's total would pass open_budget. Each
-- undeclared experiment has its entry there (its meta key -> "<bytes> <name>"); once an hour
-- at most, when the budget or the shard's cap is reached, a pass forgets the entries of
-- experiments gone (expired or deleted: their registry entry goes too) or declared since.
-- Every key of an undeclared experiment expires idle_seconds after the call that created it
-- or the first call of a day, whichever came last: nobody's events for that long, and it goes.
-- The de-dup records of one exact for life go with it: each set written, and every set on the
-- first call of a day, expire a day later than that (the other keys' expiry may be renewed
-- later in the day, when the experiment grows: the records never go before them).
--
-- PARTICIPATE, DAY, META, MODE, REGISTRATION, TRACK, TRACK_SOURCES, SOURCES_EXPIRING,
-- TRACK_FIRST_COUNTER, TRACK_STRIDE, OFF_PLAN, GOAL_TYPE, MOMENT, SUM_FIELD, DEDUP, OPEN,
-- PRUNE_INTERVAL and COST come from the prelude (gimel_core/storage/schema.py),
-- create_experiment, unbudget and bucket_keys from prelude.lua.

local recorded = redis.call('HMGET', KEYS[1], META.counting, META.window, META.day, META.plan,
                            META.names)
-- `text + 0` reads a number's text once; Lua 5.1's tonumber reads it twice. Used where the
-- text is always a number's, as Gimel wrote it (an event's numbers: by `repr`).
local mode, window, plan = recorded[1], recorded[2], recorded[4]
local last_day = recorded[3] and recorded[3] + 0
local names = recorded[5]  -- a plan that sums nothing: its names (plans.tracked_names)
local first_event = fields_at + counters
local stride = TRACK_STRIDE
-- A reply's items as one text, separated by spaces: one bulk string is far cheaper for the
-- client to read than an array of numbers. Lua writes a number as C's "%.14g" would, which
-- costs more than the rest of the reply: 0 and 1, nearly every item, are written here.
local function reply(items)
  for i, item in ipairs(items) do
    items[i] = item == 0 and '0' or item == 1 and '1' or item
  end
  return table.concat(items, ' ')
end
if not plan and registration == REGISTRATION.declared then
  return reply({TRACK.counted, 0, 0, 0, (#ARGV - first_event + 1) / stride, 0, 0, 0})
end
local today = math.floor(now / DAY)
local budgeted = not plan  -- an undeclared experiment: the open budget and idle expiry apply
-- The mode the keys were built for; once the recorded one is found the same (below), the
-- experiment's.
local exact = keys_mode == MODE.exact
local life = exact and keys_window == 0
-- exact: most records of the current bucket (for life, the experiment's only one)
local record_cap = life and max_records or math.floor(max_records / (DEDUP.buckets + 1))

-- Whether a plan's names (plans.tracked_names) list the variant and goal.
local function listed(variant, goal)
  return string.find(names, '\nv' .. variant .. '\n', 1, true)
    and (goal == PARTICIPATE or string.find(names, '\ng' .. goal .. '\n', 1, true))
end

-- Lists a declared experiment's variant and goal once, with their counter's first count, not
-- with every event: plan.lua refuses a plan that leaves out a listed name, and clear.lua
-- finds the counters by them.
local function list(variant, goal)
  redis.call('SADD', KEYS[3], variant)
  if goal ~= PARTICIPATE then
    redis.call('SADD', KEYS[4], goal)
  end
end

-- One source's budget: what it added this hour, and whether the hour's key has its expiry.
local function spent_this_hour()
  local hour = redis.call('HMGET', KEYS[TRACK_SOURCES], source, SOURCES_EXPIRING)
  return (hour[1] or 0) + 0, hour[2]
end

-- One source's budget: its count, kept until the hour ends (the hour's key is given its
-- expiry once, with the SOURCES_EXPIRING field that says so).
local function spend(spent, expiring)
  if expiring then
    redis.call('HSET', KEYS[TRACK_SOURCES], source, spent)
  else
    redis.call('HSET', KEYS[TRACK_SOURCES], source, spent, SOURCES_EXPIRING, 1)
    redis.call('EXPIREAT', KEYS[TRACK_SOURCES], source_expiry)
  end
end

-- exact: the de-dup records (see above). load_records makes their functions and reads each
-- bucket's count; it and keep_records are made in exact mode only.
local current = TRACK_FIRST_COUNTER  -- the KEYS index of the current bucket
local counts = {}  -- each bucket's count of records
local written = {}  -- keys of the current bucket written, to expire with it
local set_index, path_of, set_key, record, known
local load_records, keep_records
if exact then
  function load_records()
    -- The sets of a bucket of `count` records, and the largest power of two not above.
    local function shape(count)
      local sets, low = math.min(1 + math.floor(count / DEDUP.load), DEDUP.sets), 1
      while low * 2 <= sets do
        low = low * 2
      end
      return sets, low
    end

    -- The index of a path's set in a bucket of `count` records (dedup.set_index).
    function set_index(count, path)
      local sets, low = shape(count)
      local index = path % low
      if index < sets - low then
        index = path % (2 * low)
      end
      return index
    end

    function path_of(member)
      return string.sub(member, -DEDUP.path_digits) + 0
    end

    function set_key(k, index)
      return KEYS[k] .. DEDUP.separator .. index
    end

    local function add_all(key, members)
      for first = 1, #members, 1000 do
        redis.call('SADD', key, unpack(members, first, math.min(first + 999, #members)))
      end
    end

    local sizes = {}
    for k = current, #KEYS do
      sizes[#sizes + 1] = KEYS[k] .. DEDUP.separator .. DEDUP.size
    end
    for j, count in ipairs(redis.call('MGET', unpack(sizes))) do
      counts[current - 1 + j] = (count or 0) + 0
    end

    -- Records a new member in the current bucket, then splits a set if that was a LOAD-th record:
    -- set `sets - low` in two, its members whose path has the next bit set moving to `sets`.
    function record(member)
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

    -- Whether a bucket holds the member's record.
    function known(member)
      local path = path_of(member)
      for k = current, #KEYS do
        if redis.call('SISMEMBER', set_key(k, set_index(counts[k], path)), member) == 1 then
          return true
        end
      end
      return false
    end
  end

  -- The current bucket's count once `new` records went in, and the expiry of its keys written
  -- (see above); on the first call of a day, of every set of the bucket.
  function keep_records(new, day_began)
    if new > 0 then
      local size = KEYS[current] .. DEDUP.separator .. DEDUP.size
      redis.call('SET', size, counts[current])
      written[size] = true
    end
    if not life then
      for key in pairs(written) do
        redis.call('EXPIREAT', key, bucket_expiry)
      end
    elseif budgeted then  -- for life, undeclared: the records go idle with the experiment
      local renewed = day_began and bucket_keys(KEYS[current]) or {}
      for key in pairs(written) do
        renewed[#renewed + 1] = key
      end
      for _, key in ipairs(renewed) do
        redis.call('EXPIRE', key, idle_seconds + DAY)
      end
    end
  end
end

-- == The steady state, counted with only the calls it needs ===========================
-- One event without numbers, of an experiment recorded in the keys' mode (exact: and
-- window) whose history is recorded up to today, into a counter the plan lists (declared)
-- or that has counted before (open: its names were admitted and its bytes charged then),
-- from a source within its budget: the whole path below would count it the same way (hll: a
-- PFADD and the counter indexed; exact: the uuid looked up, then its record and the count;
-- then the source's count), after making the functions and tables other calls need.
-- Anything else goes on below, nothing written here.
if mode == keys_mode and (not exact or window + 0 == keys_window) and last_day
    and last_day >= today and #ARGV == first_event + stride - 1 and (names or not plan) then
  local variant, goal, member, target, numbers = unpack(ARGV, first_event, #ARGV)
  local field = exact and target or ARGV[fields_at + target - TRACK_FIRST_COUNTER]
  local countable = numbers == '' and (plan and listed(variant, goal) or not plan
    and redis.call('HEXISTS', KEYS[6], field) == 1)
  local spent, expiring = 0, true
  if countable and source ~= '' then
    spent, expiring = spent_this_hour()
  end
  local new
  if countable and spent < source_budget and not exact then
    local k = target + 0
    new = redis.call('PFADD', KEYS[k], member)
    if new == 1 and plan and redis.call('HSETNX', KEYS[6], field, KEYS[k]) == 1 then
      list(variant, goal)
    end
  elseif countable and spent < source_budget then
    load_records()
    if known(member) then
      new = 0
    elseif counts[current] < record_cap then  -- else over it: below
      new = 1
      record(member)
      if redis.call('HINCRBY', KEYS[6], field, 1) == 1 and plan then
        list(variant, goal)
      end
      keep_records(new, false)
    end
  end
  if new then
    if new == 1 and source ~= '' then
      spend(spent + 1, expiring)
    end
    return reply({TRACK.counted, new, 0, 0, 0, 0, 0, 0})
  end
end

-- == Open budget: the bytes undeclared experiments hold (see above) ====================
local grew = false  -- this call added a key, a name or a counter: renew the expiry
local pruned = false

-- Made for an undeclared experiment only: Lua makes a closure of each function defined on
-- every call, whether it runs or not. A group of functions only some calls use is made
-- in those calls alone (here, and for the sums and the de-dup records below).
local prune, afford
if budgeted then
  -- Forgets the entries of experiments gone or declared, at most once an hour; the total.
  function prune()
    local total = tonumber(redis.call('HGET', KEYS[7], OPEN.total) or '0')
    local hour = math.floor(now / PRUNE_INTERVAL)
    if pruned or tonumber(redis.call('HGET', KEYS[7], OPEN.pruned) or '-1') >= hour then
      return total
    end
    pruned, total = true, 0
    local flat = redis.call('HGETALL', KEYS[7])
    for i = 1, #flat, 2 do
      if flat[i] ~= OPEN.total and flat[i] ~= OPEN.pruned then
        local held, name = string.match(flat[i + 1], '^(%d+) (.*)$')
        local found = redis.call('HMGET', flat[i], META.counting, META.plan)
        if found[1] and not found[2] then
          total = total + tonumber(held)
        else
          redis.call('HDEL', KEYS[7], flat[i])
          if not found[1] then
            redis.call('SREM', KEYS[2], name)  -- expired: no dangling registry entry
          end
        end
      end
    end
    redis.call('HSET', KEYS[7], OPEN.total, total, OPEN.pruned, hour)
    return total
  end

  -- Charges `bytes` to this experiment if they fit the budget; false (nothing charged) if not.
  function afford(bytes)
    local total = tonumber(redis.call('HGET', KEYS[7], OPEN.total) or '0')
    if total + bytes > open_budget and prune() + bytes > open_budget then
      return false
    end
    local entry = redis.call('HGET', KEYS[7], KEYS[1])
    local held = entry and tonumber(string.match(entry, '^%d+')) or 0
    redis.call('HSET', KEYS[7], KEYS[1], (held + bytes) .. ' ' .. experiment)
    redis.call('HINCRBY', KEYS[7], OPEN.total, bytes)
    grew = true
    return true
  end
end
-- == end of the open budget's functions ================================================

local off  -- events off the plan, by OFF_PLAN reason (nil: none yet)
local function drop(reason)
  off = off or {}
  off[reason] = (off[reason] or 0) + 1
end

-- The TRACK.counted reply of these counts, then one count per OFF_PLAN reason, in its order,
-- if an event was off the plan (else not: the usual reply stays short).
local function counted(...)
  local items = {TRACK.counted, ...}
  if off then
    local reason = 0
    for _ in pairs(OFF_PLAN) do
      reason = reason + 1
      items[#items + 1] = off[reason] or 0
    end
  end
  return reply(items)
end

-- An event's numbers slot as its value, total and covariate, each read once (nil where none).
local function split(numbers)
  if numbers == '' then
    return nil, nil, nil
  end
  local value, total, covariate = string.match(numbers, '^([^,]*),([^,]*),([^,]*)$')
  return value ~= '' and value + 0 or nil, total ~= '' and total + 0 or nil,
    covariate ~= '' and covariate + 0 or nil
end

if not mode then
  -- Undeclared, so no event carrying a number counts: if every one does, nothing is created.
  local numbered = 0
  for i = first_event, #ARGV, stride do
    local value, _, covariate = split(ARGV[i + stride - 1])
    if value or covariate then
      drop(value and OFF_PLAN.not_summed or OFF_PLAN.no_covariate)
      numbered = numbered + 1
    end
  end
  if numbered * stride == #ARGV - first_event + 1 then
    return counted(0, 0, 0, 0, 0, 0, 0)
  end
  off = nil  -- counted again with the rest, below
  local full = redis.call('SCARD', KEYS[2]) >= max_experiments
  if full and budgeted then  -- names of expired experiments may hold places
    prune()
    full = redis.call('SCARD', KEYS[2]) >= max_experiments
  end
  if full then
    return reply({TRACK.shard_full})
  end
  unbudget(KEYS[7], KEYS[1])  -- an entry left by an expired one of that name is not this one's
  -- meta, variants, goals, history, index or counts, and the entries naming it
  local size = COST.meta + 5 * (COST.key + #KEYS[1]) + 2 * (COST.member + #experiment + #KEYS[1])
  if not afford(size) then
    return reply({TRACK.counted, 0, 0, 0, 0, 0, (#ARGV - first_event + 1) / stride, 0})
  end
  mode, window = new_mode, new_window
  last_day = create_experiment(KEYS[1], KEYS[2], experiment, mode, window, new_analysis, now)
end
if mode ~= keys_mode or (mode == MODE.exact and window + 0 ~= keys_window) then
  return reply({TRACK.recorded_otherwise, mode, window})
end
local day_began = last_day < today
if day_began then
  local totals, flat = {}, redis.call('HGETALL', KEYS[6])
  for i = 1, #flat, 2 do
    if not exact then
      totals[flat[i]] = redis.call('PFCOUNT', flat[i + 1])
    elseif string.find(flat[i], SUM_FIELD) then
      totals[flat[i]] = flat[i + 1]  -- a sum: as text, every digit kept
    else
      totals[flat[i]] = tonumber(flat[i + 1])
    end
  end
  if next(totals) then
    local snapshot = cjson.encode(totals)
    if not budgeted or afford(COST.member + #snapshot) then
      redis.call('HSET', KEYS[5], last_day, snapshot)
    end
  end
  redis.call('HSET', KEYS[1], META.day, today)
  if budgeted then  -- a new day: renew every key's expiry (the head's at the end)
    grew = true
    -- one older than the budget gets an entry, so that it is forgotten once it expires
    redis.call('HSETNX', KEYS[7], KEYS[1], '0 ' .. experiment)
    if not exact then
      for i = 2, #flat, 2 do
        redis.call('EXPIRE', flat[i], idle_seconds)
      end
    end
  end
end

-- Undeclared: whether a counter exists or its bytes fit the budget (then charged), once per
-- counter and call (counter_fits, below); whether a name is admitted, once per name and call
-- (admit, below: a batch's events mostly repeat a few names).
local afforded = {}
local fresh = {}  -- hll: the HyperLogLogs charged in this call (keys)
local indexed = {}  -- hll: KEYS indexes of HyperLogLogs found in the counter index
-- Made for an undeclared experiment only, as prune and afford.
local admit, counter_held, counter_fits
if budgeted then
  local admitted = {[KEYS[3]] = {}, [KEYS[4]] = {}}  -- set -> name -> its verdict
  local held = {}  -- whether a counter was there when the call began, once per counter

  -- Adds a name to a set unless that would pass the cap or the budget: true, 'cap' or 'budget'.
  -- Within a call each verdict stands: the set, the budget's total and the names' costs only
  -- grow.
  local function verdict(key, name, cap)
    if redis.call('SISMEMBER', key, name) == 1 then
      return true
    end
    if redis.call('SCARD', key) >= cap then
      return 'cap'
    end
    if not afford(COST.member + #name) then
      return 'budget'
    end
    redis.call('SADD', key, name)
    return true
  end

  function admit(key, name, cap)
    local known = admitted[key]
    local found = known[name]
    if found == nil then
      found = verdict(key, name, cap)
      known[name] = found
    end
    return found
  end

  -- The counts field of a counter. hll: `target` is its KEYS index; exact: its field.
  local function field_of(target)
    return exact and target or ARGV[fields_at + tonumber(target) - TRACK_FIRST_COUNTER]
  end

  -- Whether the counter was in the index (hll) or the counts (exact) when the call began.
  -- One that was has its variant and goal admitted: they were, before it was made.
  function counter_held(target)
    local found = held[target]
    if found == nil then
      found = redis.call('HEXISTS', KEYS[6], field_of(target)) == 1
      held[target] = found
      if found and not exact then
        indexed[tonumber(target)] = true
      end
    end
    return found
  end

  -- Whether a counter fits (see above).
  function counter_fits(target)
    if afforded[target] == nil then
      local fits = counter_held(target)
      if not fits and exact then
        fits = afford(COST.member + #target)
      elseif not fits then
        local key = KEYS[tonumber(target)]
        fits = afford(COST.key + COST.hll + COST.member + 2 * #key + #field_of(target))
        fresh[key] = fits or nil
      end
      afforded[target] = fits
    end
    return afforded[target]
  end
end

-- The plan's names, as sets, its goals by name and its covariate, decoded from the plan
-- unless it came with its names (then it sums nothing, and decoding it would be a sixth of
-- the call's cost). summed: exact, and the plan declares a value goal or a covariate.
local variants, goals, plan_covariate
local summed = false
if plan and not names then
  local decoded = cjson.decode(plan)
  variants, goals = {}, {}
  for _, name in ipairs(decoded.variants) do
    variants[name] = true
  end
  for _, goal in ipairs(decoded.goals) do
    goals[goal.name] = goal
    summed = summed or goal.type == GOAL_TYPE.value
  end
  if type(decoded.covariate) == 'table' then  -- else absent, or cjson.null
    plan_covariate = decoded.covariate
    summed = true
  end
  summed = summed and exact
end

-- Whether the plan names the event's variant and goal.
local function planned(variant, goal)
  if names then
    return listed(variant, goal)
  end
  return variants[variant] and (goal == PARTICIPATE or goals[goal])
end

-- The OFF_PLAN reason an event's numbers do not fit the plan for, or nil (they fit).
local function off_plan(goal, value, total, covariate)
  local spec = goals and goals[goal]
  local valued = spec and spec.type == GOAL_TYPE.value
  if value then
    if not plan or not exact then
      return OFF_PLAN.not_summed
    elseif not valued then
      return OFF_PLAN.not_value_goal
    elseif spec.negative ~= true and (value < 0 or total < 0) then
      return OFF_PLAN.negative
    end
  elseif valued then
    return OFF_PLAN.no_value
  end
  if covariate and not plan_covariate then
    return OFF_PLAN.no_covariate
  end
  return nil
end

-- The sums (see above): their functions made only for a plan that keeps some.
local add_sums
if summed then
  -- A declared cap (cjson.null when none: nil).
  local function cap_of(spec)
    return type(spec.cap) == 'number' and spec.cap or nil
  end

  local function clip(x, low, high)
    if low and x < low then
      return low
    elseif high and x > high then
      return high
    end
    return x
  end

  -- Adds 1 to the count at `field` and each amount to its moment's field beside it (one to
  -- three of them), read and written back in one HMGET and one HSET: one HINCRBYFLOAT each
  -- would cost more (each redis.call costs, and each of those parses and writes a long
  -- double). Redis writes a Lua number given to a command as its shortest text or by
  -- "%.17g": the same double is read back. Returns the new count.
  local function write(field, m1, a1, m2, a2, m3, a3)
    local f1 = field .. m1
    if not m2 then
      local now = redis.call('HMGET', KEYS[6], field, f1)
      local count = (now[1] or 0) + 1
      redis.call('HSET', KEYS[6], field, count, f1, (now[2] or 0) + a1)
      return count
    end
    local f2 = field .. m2
    if not m3 then
      local now = redis.call('HMGET', KEYS[6], field, f1, f2)
      local count = (now[1] or 0) + 1
      redis.call('HSET', KEYS[6], field, count, f1, (now[2] or 0) + a1, f2, (now[3] or 0) + a2)
      return count
    end
    local f3 = field .. m3
    local now = redis.call('HMGET', KEYS[6], field, f1, f2, f3)
    local count = (now[1] or 0) + 1
    redis.call('HSET', KEYS[6], field, count, f1, (now[2] or 0) + a1, f2, (now[3] or 0) + a2,
               f3, (now[4] or 0) + a3)
    return count
  end

  -- Adds a new event's count, 1 at `field`, and its sums (see above) beside it; the new count.
  function add_sums(goal, field, value, total, covariate)
    local c = 0
    if plan_covariate and covariate then
      local cap = cap_of(plan_covariate)
      c = clip(covariate, cap and -cap, cap)
    end
    local spec = goals[goal]
    if goal == PARTICIPATE then
      if plan_covariate then
        return write(field, MOMENT.x, c, MOMENT.x2, c * c)
      end
    elseif spec.type == GOAL_TYPE.value then
      local cap, low = cap_of(spec), 0
      if spec.negative == true then
        low = cap and -cap
      end
      local before = clip(total, low, cap)
      local after = clip(total + value, low, cap)
      local y, y2 = after - before, after * after - before * before
      if plan_covariate then
        return write(field, MOMENT.y, y, MOMENT.y2, y2, MOMENT.xy, c * y)
      end
      return write(field, MOMENT.y, y, MOMENT.y2, y2)
    elseif plan_covariate then
      return write(field, MOMENT.xy, c)
    end
    return redis.call('HINCRBY', KEYS[6], field, 1)
  end
end

if exact then
  load_records()
end
-- One source's budget: what it added this hour (nil: not budgeted).
local spent, spent_before, expiring = nil, 0, true
if source ~= '' then
  spent, expiring = spent_this_hour()
  spent_before = spent
end

local new, dropped_variants, dropped_goals, undeclared = 0, 0, 0, 0
local over_source, over_open, over_records = 0, 0, 0
local used = {}  -- hll: KEYS index of each HyperLogLog a PFADD changed -> an event's index
for i = first_event, #ARGV, stride do
  local variant, goal, member, target, numbers = unpack(ARGV, i, i + stride - 1)
  local value, total, covariate = split(numbers)
  local counted = false
  local broke = spent and spent >= source_budget  -- one source's budget spent
  local numbered = value or covariate
  local reason = (numbered or summed) and off_plan(goal, value, total, covariate)
  if plan and not planned(variant, goal) then
    undeclared = undeclared + 1
  elseif reason then  -- nothing admitted nor written for it
    drop(reason)
  elseif plan then  -- its names are listed with its counter's first count (below)
    counted = true
  elseif broke then  -- nothing admitted nor charged for it
    over_source = over_source + 1
  else
    local variant_in, goal_in = true, true
    if not counter_held(target) then  -- else its names are admitted (above)
      variant_in = admit(KEYS[3], variant, max_variants)
      goal_in = variant_in == true and (goal == PARTICIPATE or admit(KEYS[4], goal, max_goals))
    end
    if variant_in == 'cap' then
      dropped_variants = dropped_variants + 1
    elseif goal_in == 'cap' then
      dropped_goals = dropped_goals + 1
    elseif goal_in == true and counter_fits(target) then
      counted = true
    else
      over_open = over_open + 1
    end
  end
  if counted and broke then
    counted, over_source = false, over_source + 1
  end
  local new_before = new
  if counted and not exact then
    local k = target + 0
    local added = redis.call('PFADD', KEYS[k], member)
    if added == 1 then  -- 0: the HyperLogLog was there already, so it is indexed
      used[k] = i
    end
    new = new + added
  elseif counted then
    local seen = known(member)
    if not seen and counts[current] >= record_cap then
      over_records = over_records + 1
    elseif not seen then
      record(member)
      local count
      if summed then
        count = add_sums(goal, target, value, total, covariate)
      else
        count = redis.call('HINCRBY', KEYS[6], target, 1)
      end
      if count == 1 and plan then
        list(variant, goal)
      end
      new = new + 1
    end
  end
  if spent then  -- one source's budget: only new events cost
    spent = spent + new - new_before
  end
end
-- Index only the HyperLogLogs that counted something: a dropped name leaves no trace.
for k, i in pairs(used) do
  if not indexed[k]
      and redis.call('HSETNX', KEYS[6], ARGV[fields_at + k - TRACK_FIRST_COUNTER], KEYS[k]) == 1
      and plan then
    list(ARGV[i], ARGV[i + 1])
  end
end
if exact then
  keep_records(new, day_began)
end
-- One source's budget: only new events cost.
if spent and spent > spent_before then
  spend(spent, expiring)
end

-- == Idle expiry of an undeclared experiment: renewed when it grew or a day began ======
if budgeted and grew then
  for _, i in ipairs({1, 3, 4, 5, 6}) do
    redis.call('EXPIRE', KEYS[i], idle_seconds)
  end
  for key in pairs(fresh) do
    redis.call('EXPIRE', key, idle_seconds)
  end
end

return counted(new, dropped_variants, dropped_goals, undeclared, over_source, over_open,
               over_records)
