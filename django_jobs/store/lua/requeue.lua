-- Put dead-letter jobs back at the tail of their lists with a fresh retry budget.
-- KEYS: dead, wakeup
-- ARGV: prefix, start, scan, limit, name, *ids
-- ``ids``: the jobs to requeue. None: the dead letters from rank ``start`` on (oldest first) are
-- looked at, ``scan`` of them at most, and those named ``name`` ('' = any) are requeued, up to
-- ``limit``; the others stay, so the next call goes on from the rank this one returns.
-- Returns {the ids requeued, the rank to go on from (-1 when the dead letters were all looked
-- at), {id, holder's id, ...}}; records without a queue stay in the dead-letter set.
-- A job with a unique key takes it again as its enqueue did (unique_take: for its mode, bounded
-- by ``unique_for`` counted from now): pending again, it must keep a second job of that key
-- out. When another live job holds the key, the job stays in the dead-letter set as it is and
-- the holder's id comes back in the third list.
-- What belonged to the last run goes: its start, worker, lease and error, the tokens of its
-- acknowledgements and lost leases (which count against the old budget only), and the outcome
-- pushed to its waiters (left there, it would end every new wait at once). The history of
-- failed attempts in ``errors`` stays.
local ids, start, limit = A.ids, tonumber(A.start), tonumber(A.limit)
local by_id = #ids > 0
if not by_id then ids = redis.call('ZRANGE', K.dead, start, start + tonumber(A.scan) - 1) end
-- The keys a requeue writes besides the jobs' own (their ready lists, unique keys and groups,
-- the wake-ups) are looked at before anything is written, and a call that would meet one of
-- another type is refused with the key named: a script stops at an error without undoing what
-- it did, and a job taken out of the dead letters, then refused by its list, would be on none.
-- A requeue is no hot path: a TYPE per key it writes costs it little.
local wrong_type = refusals().wrong_type
local looked_at, wrong = {}, wrong_type(K.wakeup, 'list')
local function look(key, kind)
  if not wrong and not looked_at[key] then
    looked_at[key] = true
    wrong = wrong_type(key, kind)
  end
end
for _, id in ipairs(ids) do
  local f = redis.pcall('HMGET', job_key(A.prefix, id), 'queue', 'priority', 'group', 'unique_key')
  if not f.err and f[1] and f[2] then
    look(list_key(A.prefix, f[1], f[2]), 'list')
    if f[3] then look(A.prefix .. ':group:' .. f[3], 'hash') end
    if f[4] then look(flows().unique_lock(A.prefix, f[4]), 'string') end
  end
end
if wrong then return redis.error_reply(wrong .. '; nothing was requeued') end
local done, held, looked = {}, {}, 0
for _, id in ipairs(ids) do
  if not by_id and #done >= limit then break end
  looked = looked + 1
  local jkey = job_key(A.prefix, id)
  -- A wrong type stays dead.
  local f = redis.pcall('HMGET', jkey, 'queue', 'priority', 'status', 'name', 'group', 'unique_key', 'unique_for')
  if not f.err and f[1] and f[2] and f[3] == 'failed' and (A.name == '' or f[4] == A.name)
    and redis.call('ZSCORE', K.dead, id) then
    local holder = f[6] and flows().unique_take(A.prefix, f[6], f[7], id)
    if holder then
      held[#held + 1] = id
      held[#held + 1] = holder
    else
      redis.call('ZREM', K.dead, id)
      redis.call('HSET', jkey, 'status', 'pending', 'retry_count', 0, 'lost_count', 0)
      redis.call('HDEL', jkey, 'started_at', 'finished_at', 'scheduled_at', 'worker_id', 'error', 'traceback',
        'lease_token', 'done_token', 'lost_tokens', 'late_count', 'cancel_requested', 'watched')
      redis.call('DEL', done_key(A.prefix, id))
      redis.call('PERSIST', jkey)
      redis.call('RPUSH', list_key(A.prefix, f[1], f[2]), id)
      if f[5] then workflows().step_requeued(A.prefix, id, f[5]) end  -- its group may finish now
      done[#done + 1] = id
    end
  end
end
wake(K.wakeup, #done)
-- The jobs that stayed (held, of another name, unreadable) keep their ranks: the next call
-- goes on after them.
local next_start = -1
if not by_id and start + looked < redis.call('ZCARD', K.dead) + #done then
  next_start = start + looked - #done
end
return {done, next_start, held}
