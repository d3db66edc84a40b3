-- Give a running job back unfinished (its worker is stopping, or a batch goes back unstarted):
-- it goes to the head of its list without using a retry. Only the holder of the lease may do
-- so. A job whose cancellation was requested meanwhile is cancelled instead (cancel_job, with
-- the lease's token): given back, another worker would run it, and the request would be lost.
-- KEYS: job, processing, wakeup, scheduled, retrying, cancelled
-- ARGV: id, token, prefix, now, job_ttl, keep_since
-- Returns 'released', 'cancelled', or 'lost' when the lease is not held.
local f = redis.call('HMGET', K.job, 'status', 'lease_token', 'queue', 'priority', 'limits', 'cancel_requested')
if f[1] ~= 'running' or f[2] ~= A.token then return 'lost' end
if f[6] == '1' then
  return cancel_job(A.prefix, A.id, A.now, A.job_ttl, A.keep_since, A.token, K.scheduled, K.retrying, K.processing, K.cancelled)
end
redis.call('HSET', K.job, 'status', 'pending')
redis.call('HDEL', K.job, 'lease_token')
redis.call('ZREM', K.processing, A.id)
redis.call('LPUSH', list_key(A.prefix, f[3], f[4]), A.id)
wake(K.wakeup, 1 + (f[5] and flows().free_slots(A.prefix, A.id, f[5], tonumber(A.now)) or 0))
return 'released'
