-- Flow control, kept inside the scripts that make the transitions so that it holds across every
-- worker and host: unique jobs (taken with the enqueue), rate and concurrency limits (checked
-- and taken with the claim, given back by ack, fail, cancel, release and recover). A job
-- without them pays a few field lookups, and none of these functions is built for it (see
-- flows()). Key patterns match keys.py (Keys.parked, Keys.waiting,
-- Keys.limits; the others are built here only).
--
-- A job's limits are its record's ``limits`` field, JSON written at enqueue (flow.py):
-- [["rate", key, count, per seconds], ["concurrency", key, max], ...]. A limit's id is
-- '<kind>:<key>'. A job that a limit holds back is *parked*: taken off its ready list onto the
-- waiting list of (priority, queue, limit), whose entry in the ``parked`` zset says when to look
-- at it again (when a token is due; at once when a concurrency slot is given back). Claims look
-- at due waiting lists before the ready list of the same queue and priority, so strict priority
-- holds among the jobs that may run.

-- How many jobs one claim parks at most, to keep each script call short: a claim that parked
-- this many returns nothing, due now, and the worker claims again.
local PARK_CAP = 100
local function parked_key(prefix) return prefix .. ':parked' end

-- The rest is built once per script call, and only when the call needs it
-- (``flows().admit(...)``): Redis runs a script's whole text at every call, and defining these
-- functions cost every job without limits or a unique key Lua work and garbage at each call.
local FLOWS = nil
local function flows()
  if FLOWS then return FLOWS end
  -- How many due waiting lists one claim looks at, and how many entries of their index at
  -- most to find them.
  local DUE_CAP = 64
  local DUE_CAP_TEXT = '64'
  local SCAN_CAP = 1024

  local function waiting_key(prefix, member) return prefix .. ':waiting:' .. member end

  -- The first ``count`` waiting lists of the parked index (0: none), the soonest a claim looks
  -- at first, each as {'<priority>|<queue>' (what its jobs share with a ready list), its
  -- member}; and how many members were left out. What a page of pending jobs lists (page.lua)
  -- and what the counts count (stats.lua): the two agree.
  local function parked_lists(prefix, count)
    local pkey = parked_key(prefix)
    local members = count > 0 and redis.call('ZRANGE', pkey, 0, count - 1) or {}
    local lists = {}
    for _, member in ipairs(members) do
      local where = string.match(member, '^(%d|[^|]+)|')
      if where then lists[#lists + 1] = {where, member} end
    end
    return lists, redis.call('ZCARD', pkey) - #members
  end
  local function job_limits(text)
    if not text or text == '' then return nil end
    local ok, specs = pcall(cjson.decode, text)
    if not ok or type(specs) ~= 'table' or #specs == 0 then return nil end
    return specs
  end

  -- The tokens in a rate limit's bucket at ``now``: refilled at count/per a second, up to count;
  -- and the time they stand at, which never goes back: a worker whose clock is behind (or whose
  -- claim arrived late) refills nothing, and leaves the next claims nothing to refill twice.
  local function served_set(queues)
    local served = {}
    for _, queue in ipairs(queues) do served[queue] = true end
    return served
  end

  -- The due waiting lists of the served ``queues``: due[priority][queue] = {member, ...}, or nil
  -- when none is due (the usual case costs one ZRANGEBYSCORE on an empty key). The index is
  -- read DUE_CAP entries at a time until DUE_CAP served ones are found, SCAN_CAP entries at most:
  -- the due lists of queues this worker does not serve (whose workers are down, or busy) come
  -- first in it and must not hide those of its own.
  local function due_waiting(prefix, now, queues)
    local served, due, found = nil, nil, 0
    for offset = 0, SCAN_CAP - 1, DUE_CAP do
      -- Every claim makes this call: its arguments go as text (``now`` as the claim got it), as
      -- Redis turns each number argument into text with printf, which costs more than the call.
      local page = offset == 0 and '0' or offset
      local members = redis.call('ZRANGEBYSCORE', parked_key(prefix), '-inf', now, 'LIMIT', page, DUE_CAP_TEXT)
      if #members == 0 then break end
      served = served or served_set(queues)
      for _, member in ipairs(members) do
        local priority, queue = string.match(member, '^(%d)|([^|]+)|')
        if priority and served[queue] then
          due = due or {}
          due[priority] = due[priority] or {}
          due[priority][queue] = due[priority][queue] or {}
          table.insert(due[priority][queue], member)
          found = found + 1
        end
      end
      if #members < DUE_CAP or found >= DUE_CAP then break end
    end
    return due
  end

  -- When a claim of ``queues`` that found nothing should look again for parked jobs, or nil
  -- (the index read as due_waiting reads it).
  local function next_parked(prefix, queues)
    local served = served_set(queues)
    for offset = 0, SCAN_CAP - 1, DUE_CAP do
      local head = redis.call('ZRANGE', parked_key(prefix), offset, offset + DUE_CAP - 1, 'WITHSCORES')
      for i = 1, #head, 2 do
        local queue = string.match(head[i], '^%d|([^|]+)|')
        if served[queue] then return tonumber(head[i + 1]) end
      end
      if #head < 2 * DUE_CAP then break end
    end
    return nil
  end

  -- What the console shows of the limits (limits.lua, stats.lua). A limit unused for a day leaves
  -- the index of limits, unless jobs still wait on it; at most FORGET_CAP a call, oldest first.

  local function waiters_key(prefix, lid) return prefix .. ':waiters:' .. lid end
  local function running_key(prefix, key) return prefix .. ':running:' .. key end
  local function bucket_key(prefix, key) return prefix .. ':bucket:' .. key end
  -- The limits used lately: limit id -> when a job last took it or was parked on it.
  local function limits_key(prefix) return prefix .. ':limits' end

  -- A job's limits from its ``limits`` field, or nil (none, or unreadable: a record whose limits
  -- cannot be read runs without them rather than never).
  local function bucket_tokens(prefix, spec, now)
    local count, per = tonumber(spec[3]), tonumber(spec[4])
    local b = redis.call('HMGET', bucket_key(prefix, spec[2]), 'tokens', 'at')
    if not b[1] then return count, now end
    local at = tonumber(b[2])
    local elapsed = math.max(now - at, 0)
    return math.min(tonumber(b[1]) + elapsed * count / per, count), math.max(now, at)
  end

  -- nil when the limit lets a job start now, else the time to look again: when the next token is
  -- due, or for a concurrency limit when the oldest running job's lease runs out (sooner when a
  -- slot is given back: see free_slot). Slots of leases that ran out (lost workers) come back.
  local function limit_wait(prefix, spec, now)
    if spec[1] == 'rate' then
      local tokens = bucket_tokens(prefix, spec, now)
      if tokens >= 1 then return nil end
      return now + (1 - tokens) * tonumber(spec[4]) / tonumber(spec[3])
    end
    local rkey = running_key(prefix, spec[2])
    redis.call('ZREMRANGEBYSCORE', rkey, '-inf', '(' .. now)
    if redis.call('ZCARD', rkey) < tonumber(spec[3]) then return nil end
    return tonumber(redis.call('ZRANGE', rkey, 0, 0, 'WITHSCORES')[2])
  end

  -- Whether job ``id`` may start now under ``specs``; if so, take a token of each rate limit and
  -- a slot of each concurrency limit (held until ``deadline``, the lease's) and return nil.
  -- Otherwise take nothing and return the id of the first limit that holds it back, and when to
  -- look again.
  local function admit(prefix, id, specs, now, deadline)
    for _, spec in ipairs(specs) do
      local again = limit_wait(prefix, spec, now)
      if again then return spec[1] .. ':' .. spec[2], again end
    end
    for _, spec in ipairs(specs) do
      if spec[1] == 'rate' then
        local per = tonumber(spec[4])
        local bkey = bucket_key(prefix, spec[2])
        local tokens, at = bucket_tokens(prefix, spec, now)
        -- count and per: the size the console shows (read_limits), as this claim saw it.
        redis.call('HSET', bkey, 'tokens', tokens - 1, 'at', at, 'count', spec[3], 'per', per)
        redis.call('EXPIRE', bkey, math.ceil(per) + 1)  -- by then full again: as good as absent
      else
        local rkey = running_key(prefix, spec[2])
        redis.call('ZADD', rkey, deadline, id)
        redis.call('EXPIRE', rkey, math.ceil(deadline - now) + 60)
      end
      redis.call('ZADD', limits_key(prefix), now, spec[1] .. ':' .. spec[2])
    end
    return nil
  end

  -- Park job ``id`` (of ``queue`` and ``priority``) on the waiting list of limit ``lid`` until
  -- ``again``. An earlier time already set for that list stays (ZADD LT).
  local function park(prefix, id, queue, priority, name, lid, again, now)
    local member = priority .. '|' .. queue .. '|' .. lid
    redis.call('RPUSH', waiting_key(prefix, member), id)
    redis.call('ZADD', parked_key(prefix), 'LT', again, member)
    redis.call('SADD', waiters_key(prefix, lid), priority .. '|' .. queue)
    redis.call('HSET', job_key(prefix, id), 'parked', member)
    redis.call('ZADD', limits_key(prefix), now, lid)
    count_event(prefix, 'limited', queue, name)
  end

  -- Forget the waiting list ``member`` if it is empty: claims no longer look at it.
  local function forget_waiting(prefix, member)
    if redis.call('LLEN', waiting_key(prefix, member)) > 0 then return end
    redis.call('ZREM', parked_key(prefix), member)
    local priority, queue, lid = string.match(member, '^(%d)|([^|]+)|(.*)$')
    redis.call('SREM', waiters_key(prefix, lid), priority .. '|' .. queue)
  end

  -- Take job ``id`` off the waiting list ``member`` (``head``: it is the first one), and forget
  -- the list once it is empty.
  local function unpark(prefix, id, member, head)
    local wkey = waiting_key(prefix, member)
    if head then redis.call('LPOP', wkey) else redis.call('LREM', wkey, 1, id) end
    redis.call('HDEL', job_key(prefix, id), 'parked')
    forget_waiting(prefix, member)
  end

  -- Give back job ``id``'s concurrency slots (it stopped running): the jobs parked on those
  -- limits may start at once. Returns how many waiting lists became due (to wake as many workers).
  local function free_slots(prefix, id, limits_text, now)
    local specs = job_limits(limits_text)
    if not specs then return 0 end
    local due = 0
    for _, spec in ipairs(specs) do
      if spec[1] == 'concurrency' and redis.call('ZREM', running_key(prefix, spec[2]), id) == 1 then
        local lid = 'concurrency:' .. spec[2]
        for _, where in ipairs(redis.call('SMEMBERS', waiters_key(prefix, lid))) do
          due = due + redis.call('ZADD', parked_key(prefix), 'XX', 'CH', now, where .. '|' .. lid)
        end
      end
    end
    return due
  end

  -- Renew job ``id``'s concurrency slots with its lease.
  local function renew_slots(prefix, id, limits_text, deadline)
    local specs = job_limits(limits_text)
    if not specs then return end
    for _, spec in ipairs(specs) do
      if spec[1] == 'concurrency' then redis.call('ZADD', running_key(prefix, spec[2]), 'XX', deadline, id) end
    end
  end

  -- The set of the served ``queues``.
  local LIMITS_KEPT = 86400
  local FORGET_CAP = 200

  local function forget_limits(prefix, now)
    local index, before = limits_key(prefix), now - LIMITS_KEPT
    for _, lid in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. before, 'LIMIT', 0, FORGET_CAP)) do
      if redis.call('EXISTS', waiters_key(prefix, lid)) == 1 then
        redis.call('ZADD', index, before, lid)  -- kept while jobs wait on it
      else
        redis.call('ZREM', index, lid)
      end
    end
  end

  -- The spec of limit ``kind``:``key`` that job ``id``'s record carries, or nil.
  local function spec_of(prefix, id, kind, key)
    local text = redis.pcall('HGET', job_key(prefix, id), 'limits')
    if type(text) ~= 'string' then return nil end  -- no record, no limits, or not a hash
    for _, spec in ipairs(job_limits(text) or {}) do
      if spec[1] == kind and spec[2] == key then return spec end
    end
    return nil
  end

  -- Limit ``lid``'s jobs waiting, summed over its waiting lists, and the head of one of them.
  local function limit_waiters(prefix, lid)
    local waiting, head = 0, nil
    for _, where in ipairs(redis.call('SMEMBERS', waiters_key(prefix, lid))) do
      local wkey = waiting_key(prefix, where .. '|' .. lid)
      waiting = waiting + redis.call('LLEN', wkey)
      head = head or redis.call('LINDEX', wkey, 0)
    end
    return waiting, head
  end

  -- The ``count`` limits used latest (after forget_limits), each {id, last used, level, size, per,
  -- jobs waiting}: a rate limit's tokens now (as bucket_tokens counts them) and its count and
  -- per seconds; a concurrency limit's slots held by live leases and its max. A size is the one
  -- the latest claim that took the limit saw, else that of a job that holds or waits on it; ''
  -- when none is known (for a rate limit, level is then '' too: a bucket untouched for its whole
  -- period is full). Numbers are returned as text (Lua would truncate them to integers).
  local function read_limits(prefix, now, count)
    forget_limits(prefix, now)
    local out = {}
    local latest = redis.call('ZREVRANGE', limits_key(prefix), 0, count - 1, 'WITHSCORES')
    for i = 1, #latest, 2 do
      local lid = latest[i]
      local kind, key = string.match(lid, '^(%a+):(.*)$')
      local waiting, head = limit_waiters(prefix, lid)
      local level, spec = '', nil
      if kind == 'rate' then
        local b = redis.call('HMGET', bucket_key(prefix, key), 'count', 'per')
        if b[1] then spec = {kind, key, b[1], b[2]} end
      elseif kind == 'concurrency' then
        local rkey = running_key(prefix, key)
        level = tostring(redis.call('ZCOUNT', rkey, '(' .. now, '+inf'))
        local holder = redis.call('ZRANGEBYSCORE', rkey, '(' .. now, '+inf', 'LIMIT', 0, 1)[1]
        if holder then spec = spec_of(prefix, holder, kind, key) end
      end
      if not spec and head then spec = spec_of(prefix, head, kind, key) end
      if kind == 'rate' and spec then level = string.format('%.3f', bucket_tokens(prefix, spec, now)) end
      out[#out + 1] = {lid, latest[i + 1], level, spec and tostring(spec[3]) or '', spec and tostring(spec[4] or '') or '', waiting}
    end
    return out
  end

  -- Unique jobs. A job enqueued with a unique key holds ``<prefix>:unique:<key>`` (its id) until
  -- it starts ('started'), until it ends ('finished'), or for its ``unique_for`` only ('window');
  -- ``unique_for`` also bounds the other two. A key whose holder's record is gone or past the
  -- point of release is free: a lock is never stranded, whatever happened to its holder.
  -- testing/unique.py mirrors unique_holder and unique_take for the testing modes: change both
  -- (tests/test_testing_unique.py runs the same scenarios on each).
  local function unique_lock(prefix, key) return prefix .. ':unique:' .. key end

  local function unique_holder(prefix, key)
    local holder = redis.call('GET', unique_lock(prefix, key))
    if not holder then return nil end
    local f = redis.pcall('HMGET', job_key(prefix, holder), 'status', 'unique_until')
    if f.err or not f[1] then
      -- Its record is gone: a window still runs its time, any other lock is free.
      if redis.call('PTTL', unique_lock(prefix, key)) > 0 then return holder end
      return nil
    end
    local status, mode = f[1], f[2]
    if mode == 'window' then return holder end
    if mode == 'started' and status ~= 'pending' then return nil end
    if status == 'completed' or status == 'failed' or status == 'cancelled' then return nil end
    return holder
  end

  -- Take the unique key ``key`` for job ``id``, for ``unique_for`` seconds from now (its record's
  -- field as text; nil or false: until the job releases it); returns the id of the job that
  -- holds it instead, or nil. The enqueue and the requeue of a dead letter take it alike. A
  -- time that is no positive number (a record written by hand) holds the key without one.
  local function unique_take(prefix, key, unique_for, id)
    local holder = unique_holder(prefix, key)
    if holder and holder ~= id then return holder end
    local seconds = tonumber(unique_for)
    if seconds and seconds > 0 and seconds < 1e12 then
      redis.call('SET', unique_lock(prefix, key), id, 'PX', string.format('%d', math.ceil(seconds * 1000)))
    else
      redis.call('SET', unique_lock(prefix, key), id)
    end
    return nil
  end

  -- Release job ``id``'s unique key as it starts (``at`` 'started') or ends ('finished'), if its
  -- mode says so and it still holds it. A 'started' lock goes at the end too (a job cancelled
  -- before it ran); a 'window' lock only with its time.
  local function unique_release(prefix, id, key, mode, at)
    if not key or mode == 'window' or (at == 'started' and mode ~= 'started') then return end
    local lock = unique_lock(prefix, key)
    if redis.call('GET', lock) == id then redis.call('DEL', lock) end
  end

  -- What a job's end gives back: its unique key and its concurrency slots. ``f`` holds its
  -- fields unique_key, unique_until and limits. Returns how many waiting lists became due.
  local function job_ended(prefix, id, unique_key, unique_until, limits_text, now)
    unique_release(prefix, id, unique_key, unique_until, 'finished')
    return free_slots(prefix, id, limits_text, now)
  end
  FLOWS = {
    waiting_key = waiting_key,
    parked_lists = parked_lists,
    job_limits = job_limits,
    due_waiting = due_waiting,
    next_parked = next_parked,
    admit = admit,
    park = park,
    unpark = unpark,
    forget_waiting = forget_waiting,
    free_slots = free_slots,
    renew_slots = renew_slots,
    forget_limits = forget_limits,
    read_limits = read_limits,
    unique_lock = unique_lock,
    unique_take = unique_take,
    unique_release = unique_release,
    job_ended = job_ended,
  }
  return FLOWS
end
