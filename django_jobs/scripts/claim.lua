-- Promote due jobs, then lease the first job of the highest non-empty list.
-- KEYS: scheduled, retrying, processing, dead, wakeup, then the lists in strict priority order
-- ARGV: prefix, now, lease deadline, lease token, worker id, promote limit
-- Returns {id, record as a flat field/value list} or {'', next due time or ''}.
local prefix, now, deadline, token, worker = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ready = promote(prefix, KEYS[1], KEYS[4], now, ARGV[6]) + promote(prefix, KEYS[2], KEYS[4], now, ARGV[6])
-- This worker takes one of the promoted jobs; the others may wake idle workers.
wake(KEYS[5], ready - 1)
for i = 6, #KEYS do
  local id = redis.call('LPOP', KEYS[i])
  while id do
    local jkey = job_key(prefix, id)
    if redis.call('HEXISTS', jkey, 'name') == 1 then
      redis.call('HSET', jkey, 'status', 'running', 'started_at', now, 'worker_id', worker, 'lease_token', token)
      redis.call('ZADD', KEYS[3], deadline, id)
      return {id, redis.call('HGETALL', jkey)}
    end
    bury(prefix, KEYS[4], id, now, 'The job record is missing.')
    id = redis.call('LPOP', KEYS[i])
  end
end
local next_due = ''
for i = 1, 2 do
  local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if first[2] and (next_due == '' or tonumber(first[2]) < tonumber(next_due)) then next_due = first[2] end
end
return {'', next_due}
