-- Store jobs and make them ready (or delay them). One call may carry many jobs.
-- KEYS: scheduled, wakeup
-- ARGV: prefix, keep_since (user index entries older than this are dropped), user_ttl,
--       then per job: id, queue, priority, due ('' = now), user_id ('' = none), created_at,
--       field count n, then n field/value pairs.
local prefix = ARGV[1]
local keep_since, user_ttl = ARGV[2], ARGV[3]
local ready = 0
local i = 4
while i <= #ARGV do
  local id, queue, priority, due, user, created = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local n = tonumber(ARGV[i + 6])
  local jkey = job_key(prefix, id)
  redis.call('HSET', jkey, unpack(ARGV, i + 7, i + 6 + 2 * n))
  if due ~= '' then
    redis.call('ZADD', KEYS[1], due, id)
  else
    redis.call('RPUSH', list_key(prefix, queue, priority), id)
    ready = ready + 1
  end
  if user ~= '' then
    local ukey = prefix .. ':user:' .. user
    redis.call('ZADD', ukey, created, id)
    redis.call('ZREMRANGEBYSCORE', ukey, '-inf', '(' .. keep_since)
    redis.call('EXPIRE', ukey, user_ttl)
  end
  i = i + 7 + 2 * n
end
wake(KEYS[2], ready)
return ready
