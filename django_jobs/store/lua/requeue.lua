-- Put dead-letter jobs back at the tail of their lists with a fresh retry budget.
-- KEYS: dead, wakeup
-- ARGV: prefix, limit, *ids
-- ``ids``: the jobs to requeue; none means all (oldest first, ``limit`` at most, 0 = no limit).
-- Returns the ids requeued; records without a queue stay in the dead-letter set.
-- What belonged to the last run goes: its start, worker, lease and error, the tokens of its
-- acknowledgements and lost leases (which count against the old budget only), and the outcome
-- pushed to its waiters (left there, it would end every new wait at once). The history of
-- failed attempts in ``errors`` stays.
local ids = A.ids
if #ids == 0 then
  ids = redis.call('ZRANGE', K.dead, 0, tonumber(A.limit) - 1)
end
local done = {}
for _, id in ipairs(ids) do
  local jkey = job_key(A.prefix, id)
  local f = redis.pcall('HMGET', jkey, 'queue', 'priority', 'status')  -- a wrong type stays dead
  if not f.err and f[1] and f[2] and f[3] == 'failed' and redis.call('ZREM', K.dead, id) == 1 then
    redis.call('HSET', jkey, 'status', 'pending', 'retry_count', 0, 'lost_count', 0)
    redis.call('HDEL', jkey, 'started_at', 'finished_at', 'scheduled_at', 'worker_id', 'error', 'traceback',
      'lease_token', 'done_token', 'lost_tokens', 'cancel_requested', 'watched')
    redis.call('DEL', done_key(A.prefix, id))
    redis.call('PERSIST', jkey)
    redis.call('RPUSH', list_key(A.prefix, f[1], f[2]), id)
    done[#done + 1] = id
  end
end
wake(K.wakeup, #done)
return done
