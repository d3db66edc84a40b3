-- What stores new jobs (enqueue.lua, enqueue_flow.lua, fire.lua), on top of _lib.lua, _flow.lua
-- and _workflow.lua.
--
-- An enqueue is all or nothing. Redis keeps what a script wrote before a command in it failed
-- (a key of the wrong type, written by hand or by another program), and a record stored on no
-- list, or a unique key taken for a job that does not exist, would stay behind the error its
-- caller got. So the scripts call enqueue_job (and enqueue_jobs its writes) under a Lua pcall,
-- and a refused call takes back what it wrote and says which key refused it (refusals()). The
-- calls that work pay for one pcall, not for a TYPE per key: what was written is found after
-- the error, from the call's own arguments (its ids are new: whatever holds one was written by
-- this call). The last write that may be refused is the count of events, after the wake-up
-- list was read and before it is written: neither needs taking back.

-- Index a job just stored (its record written): by ``user`` (its user id, '' = none), and as
-- due at ``due`` ('' = now) or, ``waiting`` true, as a workflow's step that waits for the steps
-- before it. Returns whether it is ready (the caller pushes it on its list) and the wake-ups it
-- needs (1: a delayed job due before all others).
local function place_job(prefix, keep_since, user_ttl, scheduled_key, id, due, user, created_at, waiting)
  if user ~= '' then
    -- The user index covers JOB_TTL, like the records of finished jobs.
    local ukey = prefix .. ':user:' .. user
    redis.call('ZADD', ukey, created_at, id)
    redis.call('ZREMRANGEBYSCORE', ukey, '-inf', '(' .. keep_since)
    redis.call('EXPIRE', ukey, user_ttl)
  end
  if waiting then
    redis.call('ZADD', waiting_jobs_key(prefix), created_at, id)
  elseif due ~= '' then
    redis.call('ZADD', scheduled_key, due, id)
    -- Due before any other: idle workers must learn when to look next.
    if redis.call('ZRANGE', scheduled_key, '0', '0')[1] == id then return false, 1 end
  else
    return true, 0
  end
  return false, 0
end

-- The unique key and its time (``unique_for``) of the one job of a call (calls.job_values:
-- its record's other fields from the 9th value on, after the leading ones), or nil.
local function unique_of(job)
  local unique, unique_for
  for k = 9, #job, 2 do
    local field = job[k]
    if field == 'unique_key' then unique = job[k + 1]
    elseif field == 'unique_for' then unique_for = job[k + 1]
    end
  end
  return unique, unique_for
end

-- What a refused enqueue needs, built once per script call and only when one is refused (as
-- flows()): a script run with EVALSHA defines every function it carries at each call.
local REFUSALS = nil
local function refusals()
  if REFUSALS then return REFUSALS end

  -- 'WRONGTYPE <key> holds a <kind>, not a <expected>', or nil when ``key`` is missing or of
  -- the ``expected`` type.
  local function wrong_type(key, expected)
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'none' and kind ~= expected then
      return 'WRONGTYPE ' .. key .. ' holds a ' .. kind .. ', not a ' .. expected
    end
  end

  -- The error reply of a refused enqueue whose writes were taken back: the first key of
  -- ``checks`` ({key, its type, ...}: the keys the call touched, in that order) of another
  -- type, named, or else Redis's own error ``err`` (a Lua error: text, or a table with ``err``).
  local function refusal(err, checks)
    local text
    for k = 1, #checks, 2 do
      text = wrong_type(checks[k], checks[k + 1])
      if text then break end
    end
    if not text then text = type(err) == 'table' and err.err or tostring(err) end
    return redis.error_reply(text .. '; nothing of this enqueue was stored')
  end

  -- Take back what storing job ``id`` (store_job's arguments) wrote, as far as it got;
  -- ``jkey`` did not exist before the call. Each step is safe where nothing was written, and
  -- the keys that may be of the wrong type are written with pcall. ``check(key, type)`` is
  -- told the keys that storing it touches.
  local function take_back_job(prefix, scheduled_key, jkey, id, due, user, waiting, unique, check)
    redis.call('DEL', jkey)
    if unique then
      local lock = flows().unique_lock(prefix, unique)
      if redis.pcall('GET', lock) == id then redis.call('DEL', lock) end
      check(lock, 'string')
    end
    if user ~= '' then
      local ukey = prefix .. ':user:' .. user
      redis.pcall('ZREM', ukey, id)
      check(ukey, 'zset')
    end
    if waiting then
      redis.pcall('ZREM', waiting_jobs_key(prefix), id)
      check(waiting_jobs_key(prefix), 'zset')
    elseif due ~= '' then
      redis.pcall('ZREM', scheduled_key, id)
      check(scheduled_key, 'zset')
    end
  end

  -- The keys to look at to name the one that refused a call, without repeats, and the
  -- function that adds one.
  local function checklist()
    local checks, seen = {}, {}
    return checks, function(key, kind)
      if not seen[key] then seen[key] = true; checks[#checks + 1] = key; checks[#checks + 1] = kind end
    end
  end

  -- The error reply of a call of enqueue_job that Redis refused with ``err``, once what it
  -- wrote is taken back: its record did not exist before (enqueue_job writes nothing when it
  -- does).
  local function job_refused(err, prefix, job, scheduled_key, wakeup_key)
    local id, due, waiting = job[1], job[2], job[8] == 'waiting'
    local unique = unique_of(job)
    local checks, check = checklist()
    take_back_job(prefix, scheduled_key, job_key(prefix, id), id, due, job[3], waiting, unique, check)
    if not waiting and due == '' then
      local list = list_key(prefix, job[5], job[6])
      if redis.pcall('LINDEX', list, -1) == id then redis.call('RPOP', list) end
      check(list, 'list')
    end
    check(wakeup_key, 'list')
    check(events_key(prefix), 'hash')
    return refusal(err, checks)
  end

  -- The error reply of a call of enqueue_jobs (its tables) that Redis refused with ``err``,
  -- once what it wrote is taken back: the records it stored (not those ``before`` it), the
  -- ids it pushed on ``lists`` (at their tails, all or none per list: one key, one type) and
  -- the events it ``counted``.
  local function jobs_refused(err, prefix, jobs, scheduled_key, wakeup_key, shapes, lists, keys, starts, before, counted)
    local checks, check = checklist()
    for k, jkey in ipairs(keys) do
      if not before[jkey] then
        local i = starts[k]
        local shape = shapes[jobs[i + 3]]
        take_back_job(prefix, scheduled_key, jkey, jobs[i], jobs[i + 1], jobs[i + 2], shape.waiting, shape.unique, check)
      end
    end
    for _, pair in ipairs(lists) do
      local list, ids = pair[1], pair[2]
      if #ids > 0 and redis.pcall('LINDEX', list, -1) == ids[#ids] then
        redis.call('LTRIM', list, 0, -#ids - 1)
      end
      check(list, 'list')
    end
    for _, c in ipairs(counted) do
      if count_event(prefix, 'enqueued', c[1], c[2], string.format('%d', -c[3])) == 0 then
        redis.call('HDEL', events_key(prefix), 'enqueued|' .. c[1] .. '|' .. c[2])
      end
    end
    check(wakeup_key, 'list')
    check(events_key(prefix), 'hash')
    return refusal(err, checks)
  end

  REFUSALS = {wrong_type = wrong_type, job_refused = job_refused, jobs_refused = jobs_refused}
  return REFUSALS
end

-- Store the one job of a call (``job``: calls.job_values, flat: its id, due time and user id,
-- the values of record.py's LEADING_FIELDS, then its record's other fields and values) and
-- make it ready, or due later, or waiting, as enqueue_jobs does, without the JSON and the
-- tables a call of many jobs needs. A job whose record exists was stored by an earlier send of
-- this call whose reply was lost: it is left as it is. Returns {id, holder id} when another job
-- holds its unique key, else {}. Called under a pcall (see the top of this file):
-- refusals().job_refused takes back a refused call.
local function enqueue_job(prefix, keep_since, user_ttl, job, scheduled_key, wakeup_key)
  local id = job[1]
  local jkey = job_key(prefix, id)
  if redis.call('EXISTS', jkey) == 1 then return {} end
  local unique, unique_for = unique_of(job)
  if unique then
    local holder = flows().unique_take(prefix, unique, unique_for, id)
    if holder then return {id, holder} end
  end
  -- name, queue, priority, created_at and status are the values 4 to 8: their field names
  -- are written here rather than sent, as each argument of a call costs Redis about 1,100
  -- instructions, a quarter of a PING (bench/instructions.py --costs).
  redis.call('HSET', jkey, 'name', job[4], 'queue', job[5], 'priority', job[6], 'created_at', job[7], 'status', job[8], unpack(job, 9, #job))
  local ready, wakeups = place_job(prefix, keep_since, user_ttl, scheduled_key, id, job[2], job[3], job[7], job[8] == 'waiting')
  if ready then
    redis.call('RPUSH', list_key(prefix, job[5], job[6]), id)
    wakeups = 1
  end
  local room = wakeups > 0 and WAKE_CAP - redis.call('LLEN', wakeup_key) or 0
  count_event(prefix, 'enqueued', job[5], job[4])
  wake(wakeup_key, wakeups, room)
  return {}
end

-- Store the jobs of ``call`` (the decoded JSON of calls.enqueue_values: {shapes, jobs}) as
-- enqueue_job stores one, all or nothing: a refused call takes back the writes of every job of
-- it and returns the error reply (refusals()). A shape is what jobs of a call share: {name,
-- queue, priority, status, the names of the fields whose values each job has, the other fields
-- of their records and their values (flat)}. ``jobs`` is flat: per job its id, due time, user
-- id, shape (its index), created_at, then its values of the fields its shape names.
-- Returns {id, holder id, ...} for the jobs another job's unique key held back, and sends a
-- wake-up per ready job, and one when a delayed job is due before all others.
local function enqueue_jobs(prefix, keep_since, user_ttl, call, scheduled_key, wakeup_key)
  local jobs = call[2]
  -- Per shape the arguments of its jobs' HSET (each job writes its values into them, after
  -- ``fixed``), how many values a job has after its created_at, its unique key and time, if
  -- any, the ids of its ready jobs (in a table its queue and priority share with other shapes:
  -- one RPUSH per list, in order) and how many of its jobs were stored (one HINCRBY per kind
  -- of job).
  local shapes, ready, lists = {}, {}, {}
  for s, shape in ipairs(call[1]) do
    local queue, priority = shape[2], shape[3]
    local row = {'name', shape[1], 'queue', queue, 'priority', priority, 'created_at', '', 'status', shape[4]}
    local by_priority = ready[queue]
    if not by_priority then by_priority = {}; ready[queue] = by_priority end
    local ids = by_priority[priority]
    if not ids then
      ids = {}; by_priority[priority] = ids
      lists[#lists + 1] = {list_key(prefix, queue, priority), ids}
    end
    local names, shared = shape[5], shape[6]
    local spec = {row = row, extra = #names, waiting = shape[4] == 'waiting', ready = ids, stored = 0}
    for k = 1, #shared, 2 do
      local field = shared[k]
      row[#row + 1] = field
      row[#row + 1] = shared[k + 1]
      if field == 'unique_key' then spec.unique = shared[k + 1]
      elseif field == 'unique_for' then spec.unique_for = shared[k + 1]
      end
    end
    -- Each job's values of ``names`` go after the shared ones: row[fixed + 2 * j].
    local last = #row
    for j, field in ipairs(names) do
      row[last + 2 * j - 1] = field
      row[last + 2 * j] = ''
    end
    spec.fixed = last
    shapes[s] = spec
  end
  -- Ids are made before the call: one that exists was stored by an earlier send of this call
  -- whose reply was lost, and sending it again must not store (or run) the job twice. One
  -- EXISTS of all the keys answers for the whole call on its first send (none exists, and no
  -- id comes twice); otherwise each job is looked up before it is stored.
  local keys, starts, seen, repeated = {}, {}, {}, false
  local i, n = 1, #jobs
  while i <= n do
    local jkey = job_key(prefix, jobs[i])
    if seen[jkey] then repeated = true end
    seen[jkey] = true
    keys[#keys + 1] = jkey
    starts[#starts + 1] = i
    i = i + 5 + shapes[jobs[i + 3]].extra
  end
  local found = 0
  -- In slices: unpack() returns a few thousand values at most.
  for s = 1, #keys, 1000 do
    found = found + redis.call('EXISTS', unpack(keys, s, math.min(s + 999, #keys)))
  end
  local look = repeated or found > 0
  -- The records there before this call, which a refusal must leave (none on a first send).
  local before = {}
  if found > 0 then
    for _, jkey in ipairs(keys) do
      if redis.call('EXISTS', jkey) == 1 then before[jkey] = true end
    end
  end
  -- The writes, under a pcall. ``counted``: {queue, name, count} of each count of events made,
  -- for a refused call to take back.
  local counted = {}
  local function store_all()
    local wakeups, taken = 0, {}
    for k, jkey in ipairs(keys) do
      local i = starts[k]
      local id = jobs[i]
      local shape = shapes[jobs[i + 3]]
      if not look or redis.call('EXISTS', jkey) == 0 then
        local row, last, created_at = shape.row, shape.fixed, jobs[i + 4]
        row[8] = created_at
        for j = 1, shape.extra do row[last + 2 * j] = jobs[i + 4 + j] end
        local holder = shape.unique and flows().unique_take(prefix, shape.unique, shape.unique_for, id)
        if holder then
          taken[#taken + 1] = id
          taken[#taken + 1] = holder
        else
          redis.call('HSET', jkey, unpack(row, 1, #row))
          local is_ready, wake_for = place_job(prefix, keep_since, user_ttl, scheduled_key, id, jobs[i + 1], jobs[i + 2], created_at, shape.waiting)
          shape.stored = shape.stored + 1
          wakeups = wakeups + wake_for
          if is_ready then
            local ids = shape.ready
            ids[#ids + 1] = id
          end
        end
      end
    end
    for _, pair in ipairs(lists) do
      local list, ids = pair[1], pair[2]
      -- In slices: unpack() returns a few thousand values at most.
      for s = 1, #ids, 1000 do redis.call('RPUSH', list, unpack(ids, s, math.min(s + 999, #ids))) end
      wakeups = wakeups + #ids
    end
    local room = wakeups > 0 and WAKE_CAP - redis.call('LLEN', wakeup_key) or 0
    local enqueued = {}  -- queue -> name -> count
    for _, shape in ipairs(shapes) do
      local queue, name = shape.row[4], shape.row[2]
      local names = enqueued[queue]
      if not names then names = {}; enqueued[queue] = names end
      names[name] = (names[name] or 0) + shape.stored
    end
    for queue, names in pairs(enqueued) do
      for name, count in pairs(names) do
        if count > 0 then
          count_event(prefix, 'enqueued', queue, name, count == 1 and '1' or string.format('%d', count))
          counted[#counted + 1] = {queue, name, count}
        end
      end
    end
    wake(wakeup_key, wakeups, room)
    return taken
  end
  local ok, reply = pcall(store_all)
  if ok then return reply end
  return refusals().jobs_refused(reply, prefix, jobs, scheduled_key, wakeup_key, shapes, lists, keys, starts, before, counted)
end
