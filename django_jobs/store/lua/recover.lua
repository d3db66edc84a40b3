-- Bring back jobs whose lease expired (their worker died or froze). Safe to run concurrently:
-- each expired id is taken out of the processing set once.
-- KEYS: processing, dead, cancelled, wakeup, counters, completed
-- ARGV: prefix, now, max_lost, limit, job_ttl, keep_since
-- Returns {ids requeued, ids buried as poison pills}.
local prefix, now, max_lost = A.prefix, A.now, tonumber(A.max_lost)
local requeued, buried = {}, {}
-- Completions do not trim their index (the hot path): drop the entries of expired records here.
redis.call('ZREMRANGEBYSCORE', K.completed, '-inf', '(' .. A.keep_since)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.processing, '-inf', now, 'LIMIT', 0, A.limit)) do
  redis.call('ZREM', K.processing, id)
  local jkey = job_key(prefix, id)
  local f = redis.call('HMGET', jkey, 'queue', 'priority', 'lost_count', 'cancel_requested', 'worker_id', 'retry_count')
  if not (f[1] and f[2]) then
    bury(prefix, K.dead, id, now, 'The job record is missing or has no queue and priority.')
    buried[#buried + 1] = id
  elseif f[4] == '1' then
    redis.call('HSET', jkey, 'status', 'cancelled', 'finished_at', now)
    redis.call('HDEL', jkey, 'lease_token', 'cancel_requested')
    redis.call('EXPIRE', jkey, A.job_ttl)
    index_finished(K.cancelled, id, now, A.keep_since)
    notify_done(prefix, id)
  else
    local lost = tonumber(f[3] or '0') + 1
    redis.call('HSET', jkey, 'lost_count', lost)
    redis.call('HDEL', jkey, 'lease_token')
    if lost >= max_lost then
      local reason = 'Its worker was lost ' .. lost .. ' times while running it (lease expired); '
        .. 'treated as a poison pill.'
      append_error(jkey, cjson.encode({
        attempt = tonumber(f[6] or '0') + lost, error = reason, worker_id = f[5] or '',
        failed_at = tonumber(now),
      }))
      bury(prefix, K.dead, id, now, reason)
      buried[#buried + 1] = id
    else
      redis.call('HSET', jkey, 'status', 'pending')
      redis.call('LPUSH', list_key(prefix, f[1], f[2]), id)
      requeued[#requeued + 1] = id
    end
  end
end
wake(K.wakeup, #requeued)
redis.call('HINCRBY', K.counters, 'recovered', #requeued)
return {requeued, buried}
