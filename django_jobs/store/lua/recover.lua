-- Bring back jobs whose lease expired (their worker died or froze). Safe to run concurrently:
-- each expired id is taken out of the processing set once.
-- KEYS: processing, dead, cancelled, wakeup, counters, completed
-- ARGV: prefix, now, max lost, limit, job ttl, keep_since
-- Returns {ids requeued, ids buried as poison pills}.
local prefix, now, max_lost = ARGV[1], ARGV[2], tonumber(ARGV[3])
local requeued, buried = {}, {}
-- Completions do not trim their index (the hot path): drop the entries of expired records here.
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. ARGV[6])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[4])) do
  redis.call('ZREM', KEYS[1], id)
  local jkey = job_key(prefix, id)
  local f = redis.call('HMGET', jkey, 'queue', 'priority', 'lost_count', 'cancel_requested', 'worker_id', 'retry_count')
  if not (f[1] and f[2]) then
    bury(prefix, KEYS[2], id, now, 'The job record is missing or has no queue and priority.')
    buried[#buried + 1] = id
  elseif f[4] == '1' then
    redis.call('HSET', jkey, 'status', 'cancelled', 'finished_at', now)
    redis.call('HDEL', jkey, 'lease_token', 'cancel_requested')
    redis.call('EXPIRE', jkey, ARGV[5])
    index_finished(KEYS[3], id, now, ARGV[6])
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
      bury(prefix, KEYS[2], id, now, reason)
      buried[#buried + 1] = id
    else
      redis.call('HSET', jkey, 'status', 'pending')
      redis.call('LPUSH', list_key(prefix, f[1], f[2]), id)
      requeued[#requeued + 1] = id
    end
  end
end
wake(KEYS[4], #requeued)
redis.call('HINCRBY', KEYS[5], 'recovered', #requeued)
return {requeued, buried}
