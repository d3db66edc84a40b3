-- Bring back jobs whose lease expired (their worker died or froze). Safe to run concurrently:
-- each expired id is taken out of the processing set once.
-- KEYS: processing, dead, cancelled, wakeup, counters, completed, results_swept
-- ARGV: prefix, now, max_lost, limit, job_ttl, keep_since, result_since
-- Returns {ids requeued, ids buried as poison pills or unreadable}.
local prefix, now, max_lost = A.prefix, A.now, tonumber(A.max_lost)
local requeued, buried, woken = {}, {}, 0

-- Why a worker could not read this record (``not_text`` in _lib.lua), or nil. Such a record is
-- buried here with its reason, rather than requeued (a worker would claim it again and again)
-- or returned to a caller who cannot decode its id. ``record`` is its HGETALL reply.
local function unreadable(id, record)
  local why = not_text(id, record)
  if why then return why end
  for j = 1, #record, 2 do
    if record[j] == 'priority' and not string.find(record[j + 1], '^[0-3]$') then
      -- Requeued, it would wait in a list no worker serves.
      return "unreadable record: field 'priority' is '" .. string.sub(record[j + 1], 1, 60) .. "', not 0 to 3"
    end
  end
  return nil
end

-- Completions do not trim their index (the hot path): drop the entries of expired records here,
-- and the limits unused for a day from theirs (claims only add to it).
redis.call('ZREMRANGEBYSCORE', K.completed, '-inf', '(' .. A.keep_since)
flows().forget_limits(prefix, tonumber(now))

-- The results kept in their records (see ack_job) that finished before ``result_since``
-- (RESULT_TTL ago) are taken out of them: read_jobs leaves them out already, this gives their
-- bytes back. In the completed index's order, SWEEP_LIMIT a call at most (each worker's
-- recovery loop calls every LEASE_TIMEOUT / 2, 30 s at most), from the finished time where
-- the last call stopped (``results_swept``, kept JOB_TTL like the records; first set to
-- ``result_since``, as the records of earlier versions hold no result). The last entries swept
-- are looked at again next time: others may have finished at that very time.
local SWEEP_LIMIT = 1000
local from = redis.call('GET', K.results_swept) or A.result_since
local swept = redis.call('ZRANGEBYSCORE', K.completed, from, A.result_since, 'WITHSCORES', 'LIMIT', 0, SWEEP_LIMIT)
for i = 1, #swept, 2 do redis.call('HDEL', job_key(prefix, swept[i]), 'result') end
if #swept > 0 then
  from = swept[#swept]
  -- More than SWEEP_LIMIT completions at one time: the next call starts past them, or it
  -- would stop there again.
  if #swept == 2 * SWEEP_LIMIT and swept[2] == from then from = '(' .. from end
end
redis.call('SET', K.results_swept, from, 'EX', A.job_ttl)

for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.processing, '-inf', now, 'LIMIT', 0, A.limit)) do
  redis.call('ZREM', K.processing, id)
  local jkey = job_key(prefix, id)
  local record = redis.pcall('HGETALL', jkey)
  local why
  if record.err then
    why = not_a_hash(prefix, id)
    record = {}
  else
    why = unreadable(id, record)
  end
  local f = {}
  for j = 1, #record, 2 do f[record[j]] = record[j + 1] end
  if why then
    bury(prefix, K.dead, id, now, why)
    buried[#buried + 1] = id
  elseif not (f.queue and f.priority) then
    bury(prefix, K.dead, id, now, 'The job record is missing or has no queue and priority.')
    buried[#buried + 1] = id
  elseif f.cancel_requested == '1' then
    redis.call('HSET', jkey, 'status', 'cancelled', 'finished_at', now)
    redis.call('HDEL', jkey, 'lease_token', 'cancel_requested')
    redis.call('EXPIRE', jkey, A.job_ttl)
    if f.unique_key or f.limits then
      woken = woken + flows().job_ended(prefix, id, f.unique_key, f.unique_until, f.limits, tonumber(now))
    end
    index_finished(K.cancelled, id, now, A.keep_since)
    count_event(prefix, 'cancelled', f.queue, f.name)
    notify_done(prefix, id)
    if f['then'] or f.group or f.after then workflows().step_cancelled(prefix, id, f['then'], f.group, f.after, now, A.job_ttl) end
  else
    -- Its concurrency slots come back with its lease (its unique key stays, unless it is buried).
    if f.limits then woken = woken + flows().free_slots(prefix, id, f.limits, tonumber(now)) end
    local lost = (tonumber(f.lost_count or '0') or 0) + 1
    -- The tokens taken back, the latest max_lost of them: a worker that presents one later was
    -- only late, and the loss is then uncounted (``stale`` in _lib.lua).
    local tokens = {}
    for t in string.gmatch((f.lost_tokens or '') .. ',' .. (f.lease_token or ''), '[^,]+') do
      tokens[#tokens + 1] = t
    end
    tokens = {unpack(tokens, math.max(#tokens - max_lost + 1, 1))}
    redis.call('HSET', jkey, 'lost_count', lost, 'lost_tokens', table.concat(tokens, ','))
    redis.call('HDEL', jkey, 'lease_token')
    if lost >= max_lost then
      local reason = 'Its worker was lost ' .. lost .. ' times while running it (lease expired); '
        .. 'treated as a poison pill.'
      append_error(jkey, cjson.encode({
        attempt = (tonumber(f.retry_count or '0') or 0) + lost, error = reason, worker_id = f.worker_id or '',
        failed_at = tonumber(now),
      }))
      bury(prefix, K.dead, id, now, reason)
      if f.unique_key then flows().unique_release(prefix, id, f.unique_key, f.unique_until, 'finished') end
      if f['then'] or f.group then workflows().step_dead(prefix, id, f['then'], f.group, now, A.job_ttl) end
      buried[#buried + 1] = id
    else
      redis.call('HSET', jkey, 'status', 'pending')
      redis.call('LPUSH', list_key(prefix, f.queue, f.priority), id)
      count_event(prefix, 'recovered', f.queue, f.name)
      requeued[#requeued + 1] = id
    end
  end
end
wake(K.wakeup, #requeued + woken)
redis.call('HINCRBY', K.counters, 'recovered', #requeued)
return {requeued, buried}
