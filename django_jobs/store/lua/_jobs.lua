-- What leases, acknowledges, cancels and deletes jobs, on top of _lib.lua, _flow.lua,
-- _workflow.lua and _enqueue.lua (scripts.py puts the five in that order in front of each script).

-- What a job with something to do at its end (``on_end``) keeps for it, in this order:
-- unique_key, unique_until, limits, then, group, group_index (record.py: ON_END_FIELDS).
local function end_fields(jkey)
  return redis.call('HMGET', jkey, 'unique_key', 'unique_until', 'limits', 'then', 'group', 'group_index')
end

-- Record a completion; only the holder of the current lease may. Returns 1, or 0 for a stale
-- acknowledgement. A result no longer than the lease token (32 bytes of JSON) is kept in the
-- record (field ``result``, see read_jobs), a longer one in a key of its own; either is kept
-- ``result_ttl``. In a compact record (a listpack) the field costs a dozen bytes where the key
-- costs ~100 (key name, object, TTL entry). It never turns the record into a hash table (~3
-- times bigger), whatever the server's hash-max-listpack-value: a compact record holds the
-- token already, so the server keeps values that long compact. (In a record that is a hash
-- table already, the field still costs less than a key.)
-- The same acknowledgement sent again (its first reply was lost) finds the job completed by
-- ``worker`` (the worker id it was leased to) and answers 1 again, changing nothing; the lease
-- token is not kept (32 bytes more per record, see docs/sharding.md). A completed record is
-- never written again, so whatever it answers a stale acknowledgement records nothing. Its
-- answer: 0 from any other worker (the id is in the record); from this same worker id, 1
-- only if the job was leased to it again after its lease was lost and completed under that new
-- lease before the stale one reported: a sync child runs and reports one job at a time, so
-- only an async child (jobs side by side) could, and the job did succeed in that process.
-- (Callers that lease without a worker id, '', cannot be told apart.)
-- A job with something to do at its end (``on_end``: limits or a unique key to release, a
-- workflow's next steps) has those fields read too; a plain job pays one more field looked up.
local function ack_job(prefix, id, token, worker, now, result, result_ttl, job_ttl, processing_key, completed_key, counters_key, wakeup_key)
  local jkey = job_key(prefix, id)
  local f = redis.call('HMGET', jkey, 'status', 'lease_token', 'watched', 'worker_id', 'queue', 'name', 'on_end')
  if f[1] == 'completed' and f[4] == worker then return 1 end
  if f[1] ~= 'running' or f[2] ~= token then
    stale(prefix, jkey, token, counters_key, true)
    return 0
  end
  local inline = string.len(result) <= string.len(token)
  if inline then
    redis.call('HSET', jkey, 'status', 'completed', 'finished_at', now, 'result', result)
  else
    redis.call('HSET', jkey, 'status', 'completed', 'finished_at', now)
  end
  redis.call('HDEL', jkey, 'lease_token', 'cancel_requested')
  redis.call('ZREM', processing_key, id)
  if not inline then redis.call('SET', result_key(prefix, id), result, 'EX', result_ttl) end
  redis.call('EXPIRE', jkey, job_ttl)
  index_finished(completed_key, id, now)
  count_minute(prefix, now, 'completed')
  count_event(prefix, 'succeeded', f[5], f[6])
  notify_done(prefix, id, f[3])
  if f[7] then
    local e = end_fields(jkey)
    if e[1] or e[3] then wake(wakeup_key, flows().job_ended(prefix, id, e[1], e[2], e[3], now)) end
    if e[4] or e[5] then wake(wakeup_key, workflows().step_completed(prefix, e[4], e[5], e[6], result, job_ttl)) end
  end
  return 1
end

-- Lease job ``id`` (its record as read, of ``queue``) to ``worker`` under ``token`` until
-- ``deadline``, and release its ``unique`` key if it holds it until it starts. Returns what
-- claim_next returns.
local function lease(prefix, processing_key, id, record, name, queue, unique, unique_until, now, deadline, token, worker)
  local running = {'status', 'running', 'started_at', now, 'worker_id', worker, 'lease_token', token}
  redis.call('HSET', job_key(prefix, id), unpack(running))
  redis.call('ZADD', processing_key, deadline, id)
  count_event(prefix, 'started', queue, name)
  if unique then flows().unique_release(prefix, id, unique, unique_until, 'started') end
  -- The record as read, then the fields just set: read in order, the later ones win.
  for _, value in ipairs(running) do record[#record + 1] = value end
  return {id, record}
end

-- Look at the head job ``id`` of a ready or waiting list for claim_next. Returns 'take' (it may
-- start: its limits' tokens and slots are taken), 'held' (``only`` excludes it), 'gone' (buried
-- as unreadable), 'alone' (see below) or 'limited' with the limit that holds it back and when to
-- look again; then the record it read, the job's name and queue, (``on_end`` set) its unique
-- key and until when it holds it, and whether a worker was lost under it before (its
-- ``lost_count``). A plain job's record is gone through once, for four fields. ``skip`` (a set
-- of names, or nil) holds back the jobs it names, as ``only`` those it does not.
-- ``alone``: the job would join a batch (lease_more), which a job lost before never does: when
-- a whole worker dies (SIGKILL, the OOM killer), recovery counts a loss for every job it held,
-- the unstarted ones of a batch too, as Redis cannot tell which one was running. Leased alone
-- afterwards, an innocent job is not lost again with a job that kills its worker each time,
-- and only that job reaches MAX_LOST.
local function examine(prefix, dead_key, id, now, deadline, only, skip, alone)
  local record = redis.pcall('HGETALL', job_key(prefix, id))
  local why
  if record.err then why = not_a_hash(prefix, id) else why = not_text(id, record) end
  local name, queue, on_end, lost
  if not why then
    for j = 1, #record, 2 do
      local k = record[j]
      if k == 'name' then name = record[j + 1]
      elseif k == 'queue' then queue = record[j + 1]
      elseif k == 'on_end' then on_end = true
      elseif k == 'lost_count' then lost = record[j + 1] ~= '0'
      end
    end
  end
  if name and ((only and not only[name]) or (skip and skip[name])) then return 'held' end
  if why or not name then
    bury(prefix, dead_key, id, now, why or 'The job record is missing.')
    return 'gone'
  end
  if lost and alone then return 'alone' end
  if not on_end then return 'take', record, name, queue, nil, nil, lost end
  local unique, unique_until = field_value(record, 'unique_key'), field_value(record, 'unique_until')
  local specs = flows().job_limits(field_value(record, 'limits'))
  if specs then
    local lid, again = flows().admit(prefix, id, specs, tonumber(now), deadline)
    if lid then return 'limited', record, name, queue, lid, again end
  end
  return 'take', record, name, queue, unique, unique_until, lost
end

-- For claim_next and lease_more: the head job of ready list ``list`` and examine's verdict on
-- it (nil for an empty list): the id, then what examine returns. With ``peek`` (``only`` or
-- ``skip`` may hold the head back) it is looked at first and popped unless it is held, so that
-- a job held back stays first in line; otherwise it is popped at once.
local function take_head(list, peek, prefix, dead_key, now, deadline, only, skip, alone)
  local id
  if peek then id = redis.call('LINDEX', list, 0) else id = redis.call('LPOP', list) end
  if not id then return nil end
  local verdict, record, name, of_queue, a, b, lost = examine(prefix, dead_key, id, now, deadline, only, skip, alone)
  if peek and verdict ~= 'held' then redis.call('LPOP', list) end
  return id, verdict, record, name, of_queue, a, b, lost
end

-- For claim_next: lease up to ``batch`` - 1 more jobs of ``list`` after the first one it
-- leased from there (``leased``, which they are added to), when the list is deep (it holds
-- ``batch`` jobs or more): the jobs next by strict priority, each under a token of its own
-- (batch_token), all leased now, until ``deadline``. The batch ends at a job that ``skip``
-- names (the worker runs those another way), that a limit holds back or that was lost before
-- (see examine), left at the head for the next claim; an unreadable record is buried and taken
-- off the list, as claim_next does.
local function lease_more(leased, list, prefix, processing_key, dead_key, now, deadline, token, worker, batch, skip)
  if redis.call('LLEN', list) < batch then return leased end
  for k = 1, batch - 1 do
    local id, verdict, record, name, of_queue, a, b
    repeat
      id, verdict, record, name, of_queue, a, b = take_head(list, skip, prefix, dead_key, now, deadline, nil, skip, true)
      if not id or verdict == 'held' then return leased end
      if verdict == 'limited' or verdict == 'alone' then
        redis.call('LPUSH', list, id)  -- back at the head, for the next claim (to park)
        return leased
      end
      if verdict == 'take' then
        local more = lease(prefix, processing_key, id, record, name, of_queue, a, b, now, deadline, batch_token(token, k), worker)
        leased[#leased + 1] = more[1]
        leased[#leased + 1] = more[2]
      end
    until verdict == 'take'
  end
  return leased
end

-- For claim_next: lease the first job that may start from the ``due`` waiting lists (see
-- due_waiting in _flow.lua) of ``queue`` at ``priority``, parking again those a limit still
-- holds back. Returns what claim_next returns for a leased job, 'held' (``only`` excludes the
-- job next in line) or nil.
local function take_waiting(prefix, due, priority, queue, processing_key, dead_key, now, deadline, token, worker, only)
  local members = due[priority] and due[priority][queue]
  for _, member in ipairs(members or NONE) do
    local wkey = flows().waiting_key(prefix, member)
    local id = redis.call('LINDEX', wkey, 0)
    while id do
      local verdict, record, name, of_queue, a, b = examine(prefix, dead_key, id, now, deadline, only)
      if verdict == 'held' then return 'held' end
      if verdict == 'limited' and member == priority .. '|' .. queue .. '|' .. a then
        redis.call('ZADD', parked_key(prefix), b, member)
        break
      end
      flows().unpark(prefix, id, member, true)
      if verdict == 'take' then return lease(prefix, processing_key, id, record, name, of_queue, a, b, now, deadline, token, worker) end
      if verdict == 'limited' then flows().park(prefix, id, queue, priority, name, a, b, tonumber(now)) end
      id = redis.call('LINDEX', wkey, 0)
    end
  end
  return nil
end

-- Promote due jobs, then lease the first job of the highest non-empty list of the served
-- queues (every queue's CRITICAL list before any HIGH list, and so on; FIFO within a list)
-- that its limits let start (_flow.lua): at each queue and priority, the due waiting lists of
-- parked jobs first, then the ready list, whose limited jobs are parked on the way.
-- ``queues`` are the served queue names. Returns {id, record as a flat field/value list} or
-- {'', next due time or '', held}. ``resend`` is '1' when the worker sends this claim again
-- because it got no reply the first time.
-- ``batch`` (a number) > 1 asks for more jobs of the ready list the first job comes from, when
-- that list is deep: {id, record, id, record, ...} (see lease_more), except with ``only``, when
-- ``skip`` (a set of names, or nil) names the first job or when a worker was lost under it
-- before (it comes alone, see examine). Strict priority holds for the
-- batch as it is leased: its jobs are the next ones of the highest non-empty list.
-- ``only`` (a set of job names, or nil for any job) takes the next job only if its name is one
-- of them: a worker process that runs async jobs side by side takes more of them, but never
-- skips the job that strict priority puts next. When that job is another kind, nothing is
-- taken and ``held`` is '1' (the process takes it once its async jobs are done, unless another
-- takes it first).
local function claim_next(prefix, scheduled_key, retrying_key, processing_key, dead_key, wakeup_key, now, deadline, token, worker, limit, resend, queues, only, batch, skip)
  if resend == '1' then
    local earlier = claimed_before(prefix, processing_key, deadline, token)
    if earlier then return earlier end
  end
  -- When the first delayed and retrying jobs are due, if none is due now (see promote).
  local scheduled_ready, scheduled_next = promote(prefix, scheduled_key, dead_key, now, limit)
  local retrying_ready, retrying_next = promote(prefix, retrying_key, dead_key, now, limit)
  local ready = scheduled_ready + retrying_ready
  -- This worker takes one of the promoted jobs; the others may wake idle workers.
  wake(wakeup_key, ready - 1)
  -- Jobs a limit holds back, if any are due. Without parked jobs (no key) this costs one
  -- EXISTS, the cheapest command there is; the text '0' and '1', as Redis formats number
  -- arguments slowly.
  local due = nil
  local pkey = parked_key(prefix)
  local some_parked = redis.call('EXISTS', pkey) == 1
  if some_parked and redis.call('ZRANGEBYSCORE', pkey, '-inf', now, 'LIMIT', '0', '1')[1] then
    due = flows().due_waiting(prefix, now, queues)
  end
  local parked = 0
  for _, priority in ipairs(PRIORITIES) do
    for _, queue in ipairs(queues) do
      local taken = due and take_waiting(prefix, due, priority, queue, processing_key, dead_key, now, deadline, token, worker, only)
      if taken == 'held' then
        if ready > 0 then wake(wakeup_key, 1) end  -- the promoted job it leaves for others
        return {'', '', '1'}
      end
      if taken then return taken end
      local list = list_key(prefix, queue, priority)
      while true do
        -- For a job to take, ``a`` and ``b`` are its unique key and until when it holds it;
        -- for a limited one, the limit that holds it back and when to look again.
        local id, verdict, record, name, of_queue, a, b, lost = take_head(list, only, prefix, dead_key, now, deadline, only)
        if not id then break end
        if verdict == 'held' then
          if ready > 0 then wake(wakeup_key, 1) end  -- the promoted job it leaves for others
          return {'', '', '1'}
        end
        if verdict == 'take' then
          local leased = lease(prefix, processing_key, id, record, name, of_queue, a, b, now, deadline, token, worker)
          if batch > 1 and not only and not (skip and skip[name]) and not lost then
            return lease_more(leased, list, prefix, processing_key, dead_key, now, deadline, token, worker, batch, skip)
          end
          return leased
        end
        if verdict == 'limited' then
          flows().park(prefix, id, queue, priority, name, a, b, tonumber(now))
          parked = parked + 1
          if parked >= PARK_CAP then return {'', now, '0'} end
        end
      end
    end
  end
  local next_due = nil
  -- Parked now only if it was before, or this claim parked some.
  if (some_parked or parked > 0) and redis.call('EXISTS', pkey) == 1 then next_due = flows().next_parked(prefix, queues) end
  -- Each set with its first job's due time as promote read it (false: the set is empty), or
  -- nil when promote moved some: the first is another one now. (A table keyed by the sets
  -- would leave a set whose value is nil out, and a job of the served queues due after one
  -- of other queues was promoted unsaid.)
  for _, set in ipairs({{scheduled_key, scheduled_next}, {retrying_key, retrying_next}}) do
    local first = set[2]
    if first == nil then
      local head = redis.call('ZRANGE', set[1], '0', '0', 'WITHSCORES')
      first = head[2] and tonumber(head[2])
    end
    if first and (next_due == nil or first < next_due) then next_due = first end
  end
  return {'', next_due and string.format('%.6f', next_due) or '', '0'}
end

-- Delete a job for good: its record, result, notification list, user index entry and key kept
-- aside as unreadable, and its id from the set that holds it (``sets``: the state zsets; an id
-- is in one at most, and looking in each also drops the entry of a record that expired). A
-- pending job's id is taken off its ready list (or, parked, its waiting list) too, found from
-- its queue and priority (no scan), unless ``off_list`` says that the caller took it off
-- already (a caller that takes it off a waiting list then forgets that list if it is empty).
-- The steps that wait for a workflow step deleted before it completed are cancelled (``now``,
-- ``job_ttl``: when, and how long their records are kept).
local function delete_job(prefix, id, sets, off_list, now, job_ttl)
  local jkey = job_key(prefix, id)
  local f = redis.pcall('HMGET', jkey, 'status', 'queue', 'priority', 'user_id', 'parked', 'unique_key', 'unique_until', 'limits', 'then', 'group', 'after')
  if f.err then f = {} end
  local removed = 0
  for _, zkey in ipairs(sets) do removed = removed + redis.call('ZREM', zkey, id) end
  if f[5] and not off_list then
    flows().unpark(prefix, id, f[5], false)
  elseif removed == 0 and not off_list and f[1] == 'pending' and f[2] and f[3] then
    redis.call('LREM', list_key(prefix, f[2], f[3]), 1, id)
  end
  if f[6] or f[8] then flows().job_ended(prefix, id, f[6], f[7], f[8], 0) end
  -- A workflow's step deleted before it completed: what follows it can never start.
  if (f[9] or f[10]) and f[1] ~= 'completed' then
    workflows().step_cancelled(prefix, id, f[9], f[10], f[11], now, job_ttl, 'deleted')
  end
  if f[4] then
    -- user_id is JSON: 42 or "name" (see job.py); the index key holds it as text.
    local user = f[4]
    if string.sub(user, 1, 1) == '"' then user = cjson.decode(user) end
    redis.call('ZREM', prefix .. ':user:' .. user, id)
  end
  redis.call('DEL', jkey, result_key(prefix, id), done_key(prefix, id), prefix .. ':unreadable:' .. id)
end

-- Cancel job ``id``. A pending, retrying or waiting job is cancelled at once; for a running job
-- a cancellation is requested, and its worker confirms it by calling again with its lease
-- ``token`` ('' otherwise). A workflow's steps that follow a cancelled one are cancelled too.
-- Returns 'cancelled', 'requested', 'missing' or the finished status it already had.
local function cancel_job(prefix, id, now, job_ttl, keep_since, token, scheduled_key, retrying_key, processing_key, cancelled_key)
  local jkey = job_key(prefix, id)
  -- pcall: a job key of the wrong type holds no job to cancel (a worker buries it when it meets it).
  local f = redis.pcall('HMGET', jkey, 'status', 'queue', 'priority', 'lease_token', 'name', 'parked', 'unique_key', 'unique_until', 'limits', 'then', 'group', 'after')
  if f.err or not f[1] then return 'missing' end
  local status = f[1]
  if status == 'pending' and f[6] then
    flows().unpark(prefix, id, f[6], false)  -- held back by a limit
  elseif status == 'pending' then
    if redis.call('ZREM', scheduled_key, id) == 0 and f[2] and f[3] then
      redis.call('LREM', list_key(prefix, f[2], f[3]), 1, id)
    end
  elseif status == 'retrying' then
    redis.call('ZREM', retrying_key, id)
  elseif status == 'waiting' then
    redis.call('ZREM', waiting_jobs_key(prefix), id)
  elseif status == 'running' then
    if token == '' or token ~= f[4] then
      redis.call('HSET', jkey, 'cancel_requested', '1')
      return 'requested'
    end
    redis.call('ZREM', processing_key, id)
  else
    return status
  end
  redis.call('HSET', jkey, 'status', 'cancelled', 'finished_at', now)
  redis.call('HDEL', jkey, 'lease_token', 'cancel_requested')
  redis.call('EXPIRE', jkey, job_ttl)
  index_finished(cancelled_key, id, now, keep_since)
  count_event(prefix, 'cancelled', f[2], f[5])
  if f[7] or f[9] then flows().job_ended(prefix, id, f[7], f[8], f[9], tonumber(now)) end
  notify_done(prefix, id)
  if f[10] or f[11] or f[12] then workflows().step_cancelled(prefix, id, f[10], f[11], f[12], now, job_ttl) end
  return 'cancelled'
end
