-- Renew the leases of a worker's running jobs in one call.
-- KEYS: processing
-- ARGV: prefix, new deadline, then id/token pairs
-- Returns {ids whose lease was lost, ids whose cancellation was requested}.
local lost, cancel = {}, {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local f = redis.call('HMGET', job_key(ARGV[1], id), 'status', 'lease_token', 'cancel_requested')
  if f[1] == 'running' and f[2] == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
    if f[3] == '1' then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancel}
