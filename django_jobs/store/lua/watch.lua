-- Start watching a job for its final state: returns its status, and when that is not final
-- yet marks the job so that the script that finishes it pushes to its done list.
-- KEYS: job
local status = redis.call('HGET', K.job, 'status')
if not status then return '' end
if status ~= 'completed' and status ~= 'failed' and status ~= 'cancelled' then
  redis.call('HSET', K.job, 'watched', '1')
end
return status
