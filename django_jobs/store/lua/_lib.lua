-- Helpers shared by every script; scripts.py puts this file in front of each script (see its
-- docstring for the K. and A. names the scripts read).
-- Key patterns match django_jobs/store/keys.py. All keys share the prefix's hash tag.

-- What a record without a ``max_retries`` field allows: the Job dataclass's default, which
-- Job.to_hash leaves out (record.py: LEFT_OUT_WHEN_DEFAULT).
local MAX_RETRIES = 3

local WAKE_CAP = 64
-- The priorities, the highest (CRITICAL) first, as text: a claim makes the keys of its lists
-- from them, and Lua turns a number into text far more slowly than it joins two texts. So
-- does redis.call with a number argument: on the paths every job takes (enqueue, claim,
-- acknowledgement, retry), the scripts pass numbers to Redis commands as text.
local PRIORITIES = {'3', '2', '1', '0'}
-- An empty list, for loops over what may be missing (one table, not one per loop).
local NONE = {}

local function job_key(prefix, id) return prefix .. ':job:' .. id end
local function result_key(prefix, id) return prefix .. ':result:' .. id end
local function done_key(prefix, id) return prefix .. ':done:' .. id end
local function list_key(prefix, queue, priority) return prefix .. ':queue:' .. queue .. ':' .. priority end
local function events_key(prefix) return prefix .. ':events' end

-- One token per ready job wakes one idle worker each; capped so tokens never pile up. While
-- no worker is idle the list is full, and an enqueue looks at its length only (one cheap LLEN,
-- not an RPUSH and an LTRIM: a tenth of an enqueue's Redis time). ``room``: WAKE_CAP less the
-- list's length, when the caller read it already (an enqueue reads it before its last write
-- that Redis may refuse, see _enqueue.lua).
local function wake(wakeup_key, count, room)
  if count <= 0 then return end
  room = room or WAKE_CAP - redis.call('LLEN', wakeup_key)
  if room <= 0 then return end
  local tokens = {}
  for i = 1, math.min(count, room) do tokens[i] = '1' end
  redis.call('RPUSH', wakeup_key, unpack(tokens))
end

-- Per-minute counts of finished attempts ('completed', 'failed', 'dead'), for "completed and
-- failed per minute over the last hour" without a scan: one hash per minute, named by the epoch
-- second it starts at (keys.py: minute), kept a little over an hour.
local MINUTE_KEEP = '3900'
local function minute_key(prefix, start) return prefix .. ':minute:' .. string.format('%d', start) end
local function count_minute(prefix, now, field)
  local key = minute_key(prefix, math.floor(tonumber(now) / 60) * 60)
  if redis.call('HINCRBY', key, field, '1') == 1 then redis.call('EXPIRE', key, MINUTE_KEEP) end
end

-- Counts of job events by queue and job name, for the Prometheus counters (django_jobs/metrics):
-- one hash, ``<prefix>:events`` (keys.py: events), field '<event>|<queue>|<name>', kept in the
-- script that makes the transition so that every process's events count, once. Events:
-- enqueued, started, succeeded, failed (each failed attempt), retried, dead (moved to the
-- dead letters), cancelled, recovered (requeued after its worker was lost), stale (an
-- acknowledgement or failure refused: its lease token was not the job's), limited (parked by a
-- rate or concurrency limit, see _flow.lua).
-- ``by``: how many, as text (default '1'). Returns the count.
local function count_event(prefix, event, queue, name, by)
  local field = event .. '|' .. (queue or '(unknown)') .. '|' .. (name or '(unknown)')
  return redis.call('HINCRBY', events_key(prefix), field, by or '1')
end

-- Append one JSON object (already encoded) to the job's JSON array of errors.
local function append_error(jkey, entry)
  local errors = redis.call('HGET', jkey, 'errors')
  if errors and string.len(errors) > 2 then
    errors = string.sub(errors, 1, -2) .. ',' .. entry .. ']'
  else
    errors = '[' .. entry .. ']'
  end
  redis.call('HSET', jkey, 'errors', errors)
end

-- Tell whoever waits for this job's outcome (see watch.lua) that it reached a final state.
-- ``watched`` is the job's field of that name when the caller read it already.
local function notify_done(prefix, id, watched)
  if watched == nil then watched = redis.call('HGET', job_key(prefix, id), 'watched') end
  if watched == '1' then
    local key = done_key(prefix, id)
    redis.call('RPUSH', key, '1')
    redis.call('EXPIRE', key, '600')
  end
end

-- A record no worker can run (missing or without name and queue) goes to the dead-letter
-- queue with a reason instead of vanishing or crashing a worker.
local function bury(prefix, dead_key, id, now, reason)
  local jkey = job_key(prefix, id)
  if redis.call('HEXISTS', jkey, 'name') == 0 then
    redis.call('HSET', jkey, 'name', '(unknown)')
  end
  redis.call('HSET', jkey, 'status', 'failed', 'finished_at', now, 'error', reason)
  redis.call('HDEL', jkey, 'lease_token')
  redis.call('PERSIST', jkey)
  redis.call('ZADD', dead_key, now, id)
  count_minute(prefix, now, 'dead')
  local f = redis.call('HMGET', jkey, 'queue', 'name')
  count_event(prefix, 'dead', f[1], f[2])
  notify_done(prefix, id)
end

-- The multi-byte sequences of UTF-8 as Python's strict decoder reads it (no overlong forms, no
-- surrogates, nothing above U+10FFFF).
local UTF8_FORMS = {
  '[\194-\223][\128-\191]',
  '\224[\160-\191][\128-\191]',
  '[\225-\236\238\239][\128-\191][\128-\191]',
  '\237[\128-\159][\128-\191]',
  '\240[\144-\191][\128-\191][\128-\191]',
  '[\241-\243][\128-\191][\128-\191][\128-\191]',
  '\244[\128-\143][\128-\191][\128-\191]',
}

-- Whether a worker can read ``s`` as text. ASCII, the usual case, costs one search; otherwise
-- each valid sequence becomes '.' (never part of another) and no byte above 127 may be left.
local function utf8_text(s)
  if not string.find(s, '[\128-\255]') then return true end
  for _, form in ipairs(UTF8_FORMS) do s = string.gsub(s, form, '.') end
  return not string.find(s, '[\128-\255]')
end

-- Why a worker could not read a record (pickled or binary data), or nil. ``record`` is its
-- HGETALL reply.
local function not_text(id, record)
  if not utf8_text(id) then return 'unreadable record: the job id is not UTF-8 text' end
  for j = 1, #record, 2 do
    local name = record[j]
    if not utf8_text(name) then return 'unreadable record: a field name is not UTF-8 text' end
    if not utf8_text(record[j + 1]) then
      return "unreadable record: field '" .. name .. "' is not UTF-8 text (binary or pickled data)"
    end
  end
  return nil
end

-- The value of field ``name`` in a flat field/value list (an HGETALL reply), or nil.
local function field_value(record, name)
  for j = 1, #record, 2 do
    if record[j] == name then return record[j + 1] end
  end
  return nil
end

-- A job key of another type than hash can be neither read nor buried as it is: it is moved aside
-- to ``<prefix>:unreadable:<id>`` (kept, without expiry, for whoever investigates) and the job is
-- buried with a record of its own that says so.
local function not_a_hash(prefix, id)
  local jkey, aside = job_key(prefix, id), prefix .. ':unreadable:' .. id
  local kind = redis.call('TYPE', jkey)['ok']
  redis.call('RENAME', jkey, aside)
  return 'unreadable record: the job key held a ' .. kind .. ', not a hash (moved to ' .. aside .. ')'
end

-- Move jobs of a zset (delayed or retrying) whose time has come to the tail of their list.
-- Returns how many became ready and, when none was due, when the first is due (false: the
-- zset is empty; nil when some were moved). The head is looked at first: a claim that finds
-- nothing due (an idle worker's, the usual case) pays one cheap ZRANGE, whose answer also
-- tells it when to look again (claim_next), instead of a ZRANGEBYSCORE and a ZRANGE.
local function promote(prefix, zkey, dead_key, now, limit)
  local head = redis.call('ZRANGE', zkey, '0', '0', 'WITHSCORES')
  if not head[2] then return 0, false end
  local first = tonumber(head[2])
  if first > tonumber(now) then return 0, first end
  local ids = redis.call('ZRANGEBYSCORE', zkey, '-inf', now, 'LIMIT', '0', limit)
  local ready = 0
  for _, id in ipairs(ids) do
    redis.call('ZREM', zkey, id)
    local jkey = job_key(prefix, id)
    local f = redis.pcall('HMGET', jkey, 'queue', 'priority')
    if f.err then
      bury(prefix, dead_key, id, now, not_a_hash(prefix, id))
    elseif f[1] and f[2] then
      redis.call('HSET', jkey, 'status', 'pending')
      redis.call('RPUSH', list_key(prefix, f[1], f[2]), id)
      ready = ready + 1
    else
      bury(prefix, dead_key, id, now, 'The job record is missing or has no queue and priority.')
    end
  end
  return ready, nil
end

-- Keep an index of finished jobs for as long as their records live. Entries whose records
-- expired are dropped here, and for completions (the hot path) by recover.lua.
local function index_finished(zkey, id, now, keep_since)
  redis.call('ZADD', zkey, now, id)
  if keep_since then redis.call('ZREMRANGEBYSCORE', zkey, '-inf', '(' .. keep_since) end
end

-- A stale acknowledgement or failure (its token is not the job's): counted and ignored. When the
-- token is one that recovery took back from a worker (``lost_tokens``, see recover.lua), that
-- worker was not lost but late: it froze, or its supervisor did, and it finished the job after
-- all. The job did not kill it, so the loss is no longer counted against the job (MAX_LOST);
-- but the job ran once more than its attempts say (at-least-once), and ``late_count`` says so.
local function stale(prefix, jkey, token, counters_key, finished)
  redis.call('HINCRBY', counters_key, 'stale_acks', 1)
  local job = redis.call('HMGET', jkey, 'queue', 'name')
  count_event(prefix, 'stale', job[1], job[2])
  if not finished or token == '' then return end
  local f = redis.call('HMGET', jkey, 'lost_tokens', 'lost_count')
  if not f[1] then return end
  local kept, found = {}, false
  for t in string.gmatch(f[1], '[^,]+') do
    if t == token and not found then found = true else kept[#kept + 1] = t end
  end
  if found then
    local lost = math.max((tonumber(f[2] or '1') or 1) - 1, 0)
    redis.call('HSET', jkey, 'lost_count', lost, 'lost_tokens', table.concat(kept, ','))
    redis.call('HINCRBY', jkey, 'late_count', 1)
  end
end

-- The time (epoch seconds, as text) by the server's clock, and ``lease`` seconds later: for a
-- claim sent ahead of time, which the server runs when the blocking wait in front of it ends
-- (worker/wakeups.py), so that no clock of the sender's can say when that is. A script that
-- reads the clock must be replicated by its effects: functions and scripts on Redis 7 are;
-- Redis 6.2 does so by default (lua-replicate-commands) and is asked to in any case.
local function server_clock(lease)
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
  return now, string.format('%.6f', tonumber(now) + tonumber(lease))
end

-- The lease token of the k-th job after the first of a batch that a claim leased under
-- ``token`` (claim_next): as long as ``token`` (a worker's slot holds 32 characters), and never
-- equal to a token made by new_id (hex), which has no '-'.
local function batch_token(token, k)
  return string.sub(token, 1, #token - 5) .. '-' .. string.format('%04d', k)
end

-- The jobs this worker leased with ``token`` (and batch_token) in a claim whose reply it never
-- got (the connection dropped after the script ran), in the order the claim leased them, as
-- claim_next returns them; or nil. They lie in the processing set under this very claim's
-- ``deadline``: a resent claim takes them up again rather than leave them stranded for a lease.
local function claimed_before(prefix, processing_key, deadline, token)
  local stem = string.sub(token, 1, #token - 5) .. '-'
  local found = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', processing_key, deadline, deadline)) do
    local f = redis.pcall('HMGET', job_key(prefix, id), 'status', 'lease_token')
    if not f.err and f[1] == 'running' and f[2] then
      local k
      if f[2] == token then
        k = 0
      elseif #f[2] == #token and string.sub(f[2], 1, #stem) == stem then
        k = tonumber(string.sub(f[2], #stem + 1))
      end
      if k then found[#found + 1] = {k, id} end
    end
  end
  if #found == 0 then return nil end
  table.sort(found, function(x, y) return x[1] < y[1] end)
  local reply = {}
  for _, leased in ipairs(found) do
    reply[#reply + 1] = leased[2]
    reply[#reply + 1] = redis.call('HGETALL', job_key(prefix, leased[2]))
  end
  return reply
end

-- The set of job names ``only`` (a JSON list) names, or nil for '' (any job).
local function name_set(only)
  if only == '' then return nil end
  local set = {}
  for _, name in ipairs(cjson.decode(only)) do set[name] = true end
  return set
end

-- A completed job's result kept in its record (field ``result``, see ack_job), taken out of
-- ``record`` (a flat field/value list): its value, '' once it is older than ``result_since``
-- (RESULT_TTL ago: recover.lua takes it out of the record later), or nil when the
-- record holds none (the result, if any, is in its key).
local function inline_result(record, result_since)
  local at, finished
  for j = 1, #record, 2 do
    local k = record[j]
    if k == 'result' then at = j elseif k == 'finished_at' then finished = record[j + 1] end
  end
  if not at then return nil end
  local value = table.remove(record, at + 1)
  table.remove(record, at)
  if tonumber(finished or '') and tonumber(finished) < tonumber(result_since) then return '' end
  return value
end

-- Each job of ``ids`` that has a record: {id, record as a flat field/value list, result or ''}.
-- The result is the record's own (a short one, see ack_job) or its key's; ``result_since``: the
-- time before which a job's result is expired (now - RESULT_TTL, as its key's TTL would).
-- A job key of the wrong type is read as a failed record that says so (reading changes
-- nothing; a worker that meets it buries it): one such key must not break a listing.
local function read_jobs(prefix, ids, result_since)
  local out = {}
  for _, id in ipairs(ids) do
    local jkey = job_key(prefix, id)
    local record = redis.pcall('HGETALL', jkey)
    if record.err then
      record = {'name', '(unknown)', 'status', 'failed', 'error',
        'unreadable record: the job key holds a ' .. redis.call('TYPE', jkey)['ok'] .. ', not a hash'}
    end
    if #record > 0 then
      out[#out + 1] = id
      out[#out + 1] = record
      out[#out + 1] = inline_result(record, result_since) or redis.call('GET', result_key(prefix, id)) or ''
    end
  end
  return out
end

-- The workers whose last heartbeat is at ``since`` or later, without a scan: the index names
-- them. Returns {id, last beat, record as a flat field/value list, ...}; the record is empty
-- once it expired (the worker died without a clean stop).
local function read_workers(workers_key, prefix, since)
  local out = {}
  local seen = redis.call('ZRANGEBYSCORE', workers_key, since, '+inf', 'WITHSCORES')
  for i = 1, #seen, 2 do
    out[#out + 1] = seen[i]
    out[#out + 1] = seen[i + 1]
    out[#out + 1] = redis.call('HGETALL', prefix .. ':worker:' .. seen[i])
  end
  return out
end
