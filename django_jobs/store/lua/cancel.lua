-- Cancel a job. A pending or retrying job is cancelled at once; for a running job a
-- cancellation is requested, and its worker confirms it by calling again with its lease token.
-- KEYS: job, scheduled, retrying, processing, cancelled
-- ARGV: id, prefix, now, job ttl, keep_since, lease token ('' unless the worker confirms)
-- Returns 'cancelled', 'requested', 'missing' or the finished status it already had.
local id, now = ARGV[1], ARGV[3]
local f = redis.call('HMGET', KEYS[1], 'status', 'queue', 'priority', 'lease_token')
local status = f[1]
if not status then return 'missing' end
if status == 'pending' then
  if redis.call('ZREM', KEYS[2], id) == 0 and f[2] and f[3] then
    redis.call('LREM', list_key(ARGV[2], f[2], f[3]), 1, id)
  end
elseif status == 'retrying' then
  redis.call('ZREM', KEYS[3], id)
elseif status == 'running' then
  if ARGV[6] == '' or ARGV[6] ~= f[4] then
    redis.call('HSET', KEYS[1], 'cancel_requested', '1')
    return 'requested'
  end
  redis.call('ZREM', KEYS[4], id)
else
  return status
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', now)
redis.call('HDEL', KEYS[1], 'lease_token', 'cancel_requested')
redis.call('EXPIRE', KEYS[1], ARGV[4])
index_finished(KEYS[5], id, now, ARGV[5])
notify_done(ARGV[2], id)
return 'cancelled'
