-- Enqueue the job of one periodic-task tick, unless that tick was enqueued before: claiming
-- the tick and enqueueing its job are one step, so however many schedulers fire the same tick,
-- one job is enqueued.
-- KEYS: tick (see Keys.tick), scheduled, wakeup
-- ARGV: ttl (seconds the claim is kept), then the enqueue_jobs arguments of one job (see
--       JobQueue.enqueue_args): prefix, keep_since, user_ttl, job id, ...
-- Returns the id of the tick's job: this job's, or the one an earlier claim enqueued.
local id = ARGV[5]
if redis.call('SET', KEYS[1], id, 'NX', 'EX', ARGV[1]) then
  enqueue_jobs(KEYS[2], KEYS[3], 2)
  return id
end
return redis.call('GET', KEYS[1])
