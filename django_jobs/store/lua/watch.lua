-- Start watching a job for its final state: returns its status ('' if unknown), and when that
-- is not final yet marks the job so that the script that finishes it pushes to its done list.
-- With ``read`` = '1' a job that is final already comes back whole, as fetch reads it:
-- {status, id, record, result}, so that a waiter has it in the same round trip.
-- KEYS: job
-- ARGV: prefix, id, read, result_since
local status = redis.call('HGET', K.job, 'status')
if not status then return '' end
if status ~= 'completed' and status ~= 'failed' and status ~= 'cancelled' then
  redis.call('HSET', K.job, 'watched', '1')
elseif A.read == '1' then
  local found = read_jobs(A.prefix, {A.id}, A.result_since)
  table.insert(found, 1, status)
  return found
end
return status
