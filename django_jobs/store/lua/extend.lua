-- Renew the leases of a worker's running jobs in one call.
-- KEYS: processing
-- ARGV: prefix, deadline, *leases
-- ``leases``: id, token, id, token, ...
-- Returns {ids whose lease was lost, ids whose cancellation was requested}.
local lost, cancel = {}, {}
for i = 1, #A.leases, 2 do
  local id = A.leases[i]
  local f = redis.call('HMGET', job_key(A.prefix, id), 'status', 'lease_token', 'cancel_requested', 'limits')
  if f[1] == 'running' and f[2] == A.leases[i + 1] then
    redis.call('ZADD', K.processing, 'XX', A.deadline, id)
    flows().renew_slots(A.prefix, id, f[4], A.deadline)
    if f[3] == '1' then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancel}
