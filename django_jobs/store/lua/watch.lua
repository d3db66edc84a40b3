-- Start watching a job for its final state: returns its status ('' if unknown), and when that
-- is not final yet marks the job so that the script that finishes it pushes to its done list.
-- With ``read`` = '1' a job that is final already comes back whole, as fetch reads it:
-- {status, id, record, result}, so that a waiter has it in the same round trip.
-- With ``wait`` = '1' a wait on the done list is sent behind this call, in the same write
-- (calls.wait_watched): a job that is final already, or unknown, has nothing to end that wait,
-- so the list is given a token that ends it at once if it holds none. A final job's token is
-- kept as long as one pushed when it finished (notify_done); an unknown id's for a second
-- only: no job of that id will end there, and the wait comes right behind this call.
-- KEYS: job
-- ARGV: prefix, id, read, wait, result_since
local status = redis.call('HGET', K.job, 'status')
local final = status == 'completed' or status == 'failed' or status == 'cancelled'
if status and not final then
  redis.call('HSET', K.job, 'watched', '1')
  -- A token there now is an unknown id's (see below) whose job came after all: not its end.
  if A.wait == '1' then redis.call('DEL', done_key(A.prefix, A.id)) end
  return status
end
if A.wait == '1' then
  local key = done_key(A.prefix, A.id)
  if redis.call('EXISTS', key) == 0 then
    redis.call('RPUSH', key, '1')
    if final then redis.call('EXPIRE', key, '600') else redis.call('PEXPIRE', key, '1000') end
  end
end
if not status then return '' end
if A.read == '1' then
  local found = read_jobs(A.prefix, {A.id}, A.result_since)
  table.insert(found, 1, status)
  return found
end
return status
