-- Enqueue the job of one periodic-task tick, unless that tick was enqueued before: claiming
-- the tick and enqueueing its job are one step, so however many schedulers fire the same tick,
-- one job is enqueued.
-- KEYS: tick, task_runs, scheduled, wakeup
-- ARGV: ttl, due, runs_kept, prefix, keep_since, user_ttl, *job
-- ``ttl``: seconds the claim is kept. ``task_runs``: the index of the task's runs (job id ->
-- ``due``), trimmed to the newest ``runs_kept`` and kept as long as job records (``user_ttl``).
-- The others as for enqueue.lua's call of one job.
-- Refused (WRONGTYPE, naming the key) without a write if ``tick`` is not a string,
-- ``task_runs`` not a sorted set, or a key the job's enqueue shares with every job of its queue
-- (its ready list, the delayed jobs, the wake-ups, the counters) of another type.
-- Returns the id of the tick's job: this job's, the one an earlier claim enqueued, or the job
-- that holds the unique key of the task's job (an earlier run still pending or running).

-- A key of the wrong type (written by hand, say) is refused before anything is written, with
-- the key named: a script stops at an error without undoing what it did, and a tick claimed by
-- a call that then failed would leave its job stored on no list, never to run. These checks
-- cost a tick a few cheap calls; a one-job enqueue (delay()) makes none, and reports the error
-- to its caller instead.
local function wrong_type(key, expected)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= expected then
    return 'WRONGTYPE ' .. key .. ' holds a ' .. kind .. ', not a ' .. expected
  end
end
-- The job's queue and priority are its values 7 and 9 (see enqueue_job).
local wrong = wrong_type(K.tick, 'string') or wrong_type(K.task_runs, 'zset')
  or wrong_type(list_key(A.prefix, A.job[7], A.job[9]), 'list') or wrong_type(K.scheduled, 'zset')
  or wrong_type(K.wakeup, 'list') or wrong_type(events_key(A.prefix), 'hash')
if wrong then return redis.error_reply(wrong) end
local id = A.job[1]
if redis.call('SET', K.tick, id, 'NX', 'EX', A.ttl) then
  local taken = enqueue_job(A.prefix, A.keep_since, A.user_ttl, A.job, K.scheduled, K.wakeup)
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
