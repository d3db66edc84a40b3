-- Cancel a job. A pending or retrying job is cancelled at once; for a running job a
-- cancellation is requested, and its worker confirms it by calling again with its lease token.
-- KEYS: job, scheduled, retrying, processing, cancelled
-- ARGV: id, prefix, now, job_ttl, keep_since, token
-- ``token``: '' unless the worker confirms.
-- Returns 'cancelled', 'requested', 'missing' or the finished status it already had.
local id, now = A.id, A.now
-- pcall: a job key of the wrong type holds no job to cancel (a worker buries it when it meets it).
local f = redis.pcall('HMGET', K.job, 'status', 'queue', 'priority', 'lease_token', 'name', 'parked', 'unique_key', 'unique_until', 'limits')
if f.err or not f[1] then return 'missing' end
local status = f[1]
if status == 'pending' and f[6] then
  unpark(A.prefix, id, f[6], false)  -- held back by a limit
elseif status == 'pending' then
  if redis.call('ZREM', K.scheduled, id) == 0 and f[2] and f[3] then
    redis.call('LREM', list_key(A.prefix, f[2], f[3]), 1, id)
  end
elseif status == 'retrying' then
  redis.call('ZREM', K.retrying, id)
elseif status == 'running' then
  if A.token == '' or A.token ~= f[4] then
    redis.call('HSET', K.job, 'cancel_requested', '1')
    return 'requested'
  end
  redis.call('ZREM', K.processing, id)
else
  return status
end
redis.call('HSET', K.job, 'status', 'cancelled', 'finished_at', now)
redis.call('HDEL', K.job, 'lease_token', 'cancel_requested')
redis.call('EXPIRE', K.job, A.job_ttl)
index_finished(K.cancelled, id, now, A.keep_since)
count_event(A.prefix, 'cancelled', f[2], f[5])
job_ended(A.prefix, id, f[7], f[8], f[9], tonumber(now))
notify_done(A.prefix, id)
return 'cancelled'
