-- Enqueue the job of one periodic-task tick, unless that tick was enqueued before: claiming
-- the tick and enqueueing its job are one step, so however many schedulers fire the same tick,
-- one job is enqueued.
-- KEYS: tick, scheduled, wakeup
-- ARGV: ttl, prefix, keep_since, user_ttl, *jobs
-- ``ttl``: seconds the claim is kept; the others as for enqueue.lua, with one job.
-- Returns the id of the tick's job: this job's, or the one an earlier claim enqueued.
local id = A.jobs[1]
if redis.call('SET', K.tick, id, 'NX', 'EX', A.ttl) then
  enqueue_jobs(A.prefix, A.keep_since, A.user_ttl, A.jobs, K.scheduled, K.wakeup)
  return id
end
return redis.call('GET', K.tick)
