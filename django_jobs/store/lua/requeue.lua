-- Put dead-letter jobs back at the tail of their lists with a fresh retry budget.
-- KEYS: dead, wakeup
-- ARGV: prefix, limit (0 = no limit; used when no ids are given), then ids ('' = all)
-- Returns the ids requeued; records without a queue stay in the dead-letter set.
local prefix = ARGV[1]
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
end
local done = {}
for _, id in ipairs(ids) do
  local jkey = job_key(prefix, id)
  local f = redis.call('HMGET', jkey, 'queue', 'priority', 'status')
  if f[1] and f[2] and f[3] == 'failed' and redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('HSET', jkey, 'status', 'pending', 'retry_count', 0, 'lost_count', 0)
    redis.call('HDEL', jkey, 'finished_at', 'scheduled_at', 'error', 'traceback', 'lease_token', 'cancel_requested')
    redis.call('PERSIST', jkey)
    redis.call('RPUSH', list_key(prefix, f[1], f[2]), id)
    done[#done + 1] = id
  end
end
wake(KEYS[2], #done)
return done
