-- Enqueue the job of one periodic-task tick, unless that tick was enqueued before: claiming
-- the tick and enqueueing its job are one step, so however many schedulers fire the same tick,
-- one job is enqueued.
-- KEYS: tick, task_runs, scheduled, wakeup
-- ARGV: ttl, due, runs_kept, prefix, keep_since, user_ttl, *job
-- ``ttl``: seconds the claim is kept. ``task_runs``: the index of the task's runs (job id ->
-- ``due``), trimmed to the newest ``runs_kept`` and kept as long as job records (``user_ttl``).
-- The others as for enqueue.lua's call of one job.
-- Refused (WRONGTYPE, naming the key) without a write if ``tick`` is not a string or
-- ``task_runs`` not a sorted set, or, as any enqueue is (_enqueue.lua), if a key the job's
-- enqueue writes is of another type: then the tick claimed goes with the rest of the enqueue.
-- Returns the id of the tick's job: this job's, the one an earlier claim enqueued, or the job
-- that holds the unique key of the task's job (an earlier run still pending or running).

-- The tick and the runs index are looked at before anything is written, with the key named:
-- a script stops at an error without undoing what it did, and the runs index is written after
-- the job is stored. Two cheap calls a tick; the keys of the enqueue need none (enqueue_job
-- is called under a pcall: refusals().job_refused takes its writes back and names the key).
local wrong_type = refusals().wrong_type
local wrong = wrong_type(K.tick, 'string') or wrong_type(K.task_runs, 'zset')
if wrong then return redis.error_reply(wrong) end
local id = A.job[1]
if redis.call('SET', K.tick, id, 'NX', 'EX', A.ttl) then
  local ok, taken = pcall(enqueue_job, A.prefix, A.keep_since, A.user_ttl, A.job, K.scheduled, K.wakeup)
  if not ok then
    redis.call('DEL', K.tick)
    return refusals().job_refused(taken, A.prefix, A.job, K.scheduled, K.wakeup)
  end
  if #taken > 0 then
    redis.call('SET', K.tick, taken[2], 'XX', 'KEEPTTL')
    return taken[2]
  end
  redis.call('ZADD', K.task_runs, A.due, id)
  redis.call('ZREMRANGEBYRANK', K.task_runs, 0, -tonumber(A.runs_kept) - 1)
  redis.call('EXPIRE', K.task_runs, A.user_ttl)
  return id
end
return redis.call('GET', K.tick)
