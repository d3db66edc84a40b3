-- Record a failed attempt: retry later with exponential backoff, or bury in the dead-letter set.
-- KEYS: job, processing, retrying, dead, counters, wakeup
-- ARGV: id, token, now, error, traceback, entry, backoff_base, backoff_max, retry, finished,
-- ARGV: prefix, job_ttl
-- ``entry``: the attempt's error entry as JSON; ``retry``: '1' if a retry is allowed;
-- ``finished``: '1' when the job's own process reports it (it ran to its end), '0' when the
-- supervisor records a crash or a timeout.
-- Returns {'retrying', due time} or {'failed', ''}, or {'stale', ''} when the lease is not held.
-- The token is kept as ``done_token``, so that the same call sent again (its reply was lost)
-- answers what the first one did instead of 'stale'.
local id, now = A.id, tonumber(A.now)
local f = redis.call('HMGET', K.job, 'status', 'lease_token', 'retry_count', 'max_retries', 'done_token', 'scheduled_at', 'queue', 'name', 'on_end')
if f[5] == A.token and f[1] == 'retrying' then return {'retrying', f[6]} end
if f[5] == A.token and f[1] == 'failed' then return {'failed', ''} end
if f[1] ~= 'running' or f[2] ~= A.token then
  stale(A.prefix, K.job, A.token, K.counters, A.finished == '1')
  return {'stale', ''}
end
append_error(K.job, A.entry)
redis.call('HSET', K.job, 'error', A.error, 'traceback', A.traceback, 'done_token', A.token)
redis.call('HDEL', K.job, 'lease_token')
redis.call('ZREM', K.processing, id)
count_minute(A.prefix, A.now, 'failed')
count_event(A.prefix, 'failed', f[7], f[8])
-- A job with something to do at its end (on_end) has those fields read too (see ack_job).
local e = f[9] and end_fields(K.job) or {}
-- It stops running either way: its concurrency slots go back (its unique key only at its end).
if e[3] then wake(K.wakeup, flows().free_slots(A.prefix, id, e[3], now)) end
local retries, max_retries = tonumber(f[3] or '0'), tonumber(f[4] or MAX_RETRIES)
if A.retry == '1' and retries < max_retries then
  retries = retries + 1
  local due = string.format('%.6f', now + math.min(tonumber(A.backoff_base) * 2 ^ retries, tonumber(A.backoff_max)))
  redis.call('HSET', K.job, 'status', 'retrying', 'retry_count', retries, 'scheduled_at', due)
  redis.call('ZADD', K.retrying, due, id)
  count_event(A.prefix, 'retried', f[7], f[8])
  if redis.call('ZRANGE', K.retrying, '0', '0')[1] == id then
    wake(K.wakeup, 1)  -- due before any other retry: idle workers must learn when to look next
  end
  return {'retrying', due}
end
redis.call('HSET', K.job, 'status', 'failed', 'finished_at', A.now)
redis.call('ZADD', K.dead, A.now, id)
count_minute(A.prefix, A.now, 'dead')
count_event(A.prefix, 'dead', f[7], f[8])
if e[1] then flows().unique_release(A.prefix, id, e[1], e[2], 'finished') end
notify_done(A.prefix, id)
if e[4] or e[5] then workflows().step_dead(A.prefix, id, e[4], e[5], A.now, A.job_ttl) end
return {'failed', ''}
