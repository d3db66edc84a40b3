-- Chains and groups (django_jobs/workflow.py), kept in the scripts that make the transitions: the
-- ack that completes a step starts what follows it, in the same call; what ends a step otherwise
-- (dead letters, cancellation) stops or marks what follows it. Key patterns match keys.py.
-- django_jobs/testing/workflows.py follows the same rules in the testing modes' memory store;
-- tests/test_testing_workflows.py runs the same workflows in both and compares how they end.
--
-- A job record of a workflow may carry: ``after`` (what it waits for: a step's id or
-- 'group:<gid>', for the console), ``then`` (what starts when it completes: a step's id, or
-- 'group:<gid>' for a group whose members all start), ``group`` and ``group_index`` (it is that
-- member of group <gid>), ``immutable`` ('1': it does not receive the result it waited for).
-- A step that waits for another has status 'waiting' and sits in ``<prefix>:waiting_jobs``
-- (id -> created). A group is ``<prefix>:group:<gid>`` (total, done, members: comma-separated
-- ids, then, after, failed: members now in the dead letters, failed_member, cancelled: why)
-- and ``<prefix>:group:<gid>:results`` (member index -> result JSON). Both expire JOB_TTL after
-- the group completes or is cancelled; a group with a dead member keeps them, like the dead
-- letters, until the member is requeued (and completes) or the rest is cancelled.
-- Results are JSON text from the worker, joined as text: never decoded and encoded again here
-- (cjson would change numbers).

local function waiting_jobs_key(prefix) return prefix .. ':waiting_jobs' end

-- The rest is built once per script call, and only when the call needs it
-- (``workflows().step_completed(...)``): Redis runs a script's whole text at every call, and
-- defining these functions cost every job outside a workflow Lua work and garbage at each call.
local WORKFLOWS = nil
local function workflows()
  if WORKFLOWS then return WORKFLOWS end
  local GATHER = 1000  -- results read by one HMGET when a group completes

  local function group_key(prefix, gid) return prefix .. ':group:' .. gid end
  local function group_results_key(prefix, gid) return prefix .. ':group:' .. gid .. ':results' end

  -- Make waiting step ``id`` ready, ``result`` (JSON text) prepended to its arguments unless it is
  -- immutable. Returns 1, or 0 when it no longer waits (it was cancelled or deleted).
  local function release_step(prefix, id, result)
    local jkey = job_key(prefix, id)
    local f = redis.call('HMGET', jkey, 'status', 'queue', 'priority', 'immutable', 'args')
    if f[1] ~= 'waiting' then return 0 end
    if f[4] == '1' then
      redis.call('HSET', jkey, 'status', 'pending')
    else
      local args = f[5] or '[]'
      if string.find(args, '^%[%s*%]$') then args = '[' .. result .. ']'
      else args = '[' .. result .. ',' .. string.sub(args, 2) end
      redis.call('HSET', jkey, 'status', 'pending', 'args', args)
    end
    redis.call('ZREM', waiting_jobs_key(prefix), id)
    redis.call('RPUSH', list_key(prefix, f[2], f[3]), id)
    return 1
  end

  -- Start ``target`` (a step's id or 'group:<gid>') with ``result``. Returns how many jobs became
  -- ready (to wake as many workers).
  local function start_next(prefix, target, result)
    local gid = string.match(target, '^group:(.+)$')
    if not gid then return release_step(prefix, target, result) end
    local ready = 0
    for id in string.gmatch(redis.call('HGET', group_key(prefix, gid), 'members') or '', '[^,]+') do
      ready = ready + release_step(prefix, id, result)
    end
    return ready
  end

  -- Member ``index`` of group ``gid`` completed with ``result``. Counted once per member (HSETNX:
  -- the ack is guarded by the lease token already; this guards the count itself). The last one
  -- starts what follows the group with the list of results in member order. Returns how many
  -- jobs became ready.
  local function member_done(prefix, gid, index, result, job_ttl)
    local gkey, rkey = group_key(prefix, gid), group_results_key(prefix, gid)
    local g = redis.call('HMGET', gkey, 'total', 'then', 'cancelled')
    -- Gone (deleted, expired) or cancelled: nothing waits for the results any more.
    if not g[1] or g[3] then return 0 end
    if redis.call('HSETNX', rkey, index, result) == 0 then return 0 end
    local total = tonumber(g[1])
    if redis.call('HINCRBY', gkey, 'done', 1) < total then return 0 end
    redis.call('EXPIRE', gkey, job_ttl)
    redis.call('EXPIRE', rkey, job_ttl)
    if not g[2] then return 0 end
    local parts = {}
    for first = 0, total - 1, GATHER do
      local fields = {}
      for i = first, math.min(first + GATHER, total) - 1 do fields[#fields + 1] = i end
      local values = redis.call('HMGET', rkey, unpack(fields))
      for k = 1, #fields do parts[#parts + 1] = values[k] or 'null' end
    end
    return start_next(prefix, g[2], '[' .. table.concat(parts, ',') .. ']')
  end

  -- A step completed with ``result``: start what follows it. ``then_``, ``gid`` and ``index`` are
  -- its fields of those names. Returns how many jobs became ready.
  local function step_completed(prefix, then_, gid, index, result, job_ttl)
    if gid then return member_done(prefix, gid, index, result, job_ttl) end
    return start_next(prefix, then_, result)
  end

  -- Cancel ``target`` (a step's id or 'group:<gid>') and everything after it that still waits,
  -- with ``reason`` as their error. A loop over a work list, not recursion: chains may be long.
  local function abandon(prefix, target, reason, now, job_ttl)
    local todo = {target}
    while #todo > 0 do
      local t = table.remove(todo)
      local gid = string.match(t, '^group:(.+)$')
      if gid then
        local gkey = group_key(prefix, gid)
        local g = redis.call('HMGET', gkey, 'members', 'then', 'cancelled')
        if g[1] and not g[3] then
          redis.call('HSET', gkey, 'cancelled', reason)
          redis.call('EXPIRE', gkey, job_ttl)
          redis.call('EXPIRE', group_results_key(prefix, gid), job_ttl)
          for id in string.gmatch(g[1], '[^,]+') do todo[#todo + 1] = id end
          if g[2] then todo[#todo + 1] = g[2] end
        end
      else
        local jkey = job_key(prefix, t)
        local f = redis.call('HMGET', jkey, 'status', 'queue', 'name', 'then')
        if f[1] == 'waiting' then
          redis.call('HSET', jkey, 'status', 'cancelled', 'finished_at', now, 'error', reason)
          redis.call('ZREM', waiting_jobs_key(prefix), t)
          redis.call('EXPIRE', jkey, job_ttl)
          index_finished(prefix .. ':cancelled', t, now)
          count_event(prefix, 'cancelled', f[2], f[3])
          notify_done(prefix, t)
          if f[4] then todo[#todo + 1] = f[4] end
        end
      end
    end
  end

  -- Step ``id`` went to the dead letters. A chain stops: the rest is cancelled with the reason. A
  -- group member marks its group failed; what follows the group keeps waiting, and requeueing
  -- the member (step_requeued) lets the group finish.
  local function step_dead(prefix, id, then_, gid, now, job_ttl)
    if gid then
      local gkey = group_key(prefix, gid)
      if redis.call('EXISTS', gkey) == 1 then
        redis.call('HINCRBY', gkey, 'failed', 1)
        redis.call('HSET', gkey, 'failed_member', id)
      end
    elseif then_ then
      abandon(prefix, then_, 'Not run: step ' .. id .. ' before it failed (it is in the dead letters).', now, job_ttl)
    end
  end

  -- Dead step ``id``, member of group ``gid``, was requeued: its group is no longer marked failed
  -- by it.
  local function step_requeued(prefix, id, gid)
    local gkey = group_key(prefix, gid)
    if tonumber(redis.call('HGET', gkey, 'failed') or '0') > 0 then
      if redis.call('HINCRBY', gkey, 'failed', -1) == 0 then redis.call('HDEL', gkey, 'failed_member') end
    end
  end

  -- Step ``id`` was cancelled (or deleted before it completed: ``what``): what follows it can
  -- never start and is cancelled too. A member cancels its group (which can no longer complete):
  -- its members that wait, and what follows it; members already running finish, uncounted.
  -- ``after`` is its field of that name: a callback that no longer waits lets its group's keys
  -- expire.
  local function step_cancelled(prefix, id, then_, gid, after, now, job_ttl, what)
    local reason = 'Not run: step ' .. id .. ' before it was ' .. (what or 'cancelled') .. '.'
    if then_ then abandon(prefix, then_, reason, now, job_ttl) end
    if gid then abandon(prefix, 'group:' .. gid, reason, now, job_ttl) end
    local waited = after and string.match(after, '^group:(.+)$')
    if waited then
      redis.call('EXPIRE', group_key(prefix, waited), job_ttl)
      redis.call('EXPIRE', group_results_key(prefix, waited), job_ttl)
    end
  end

  -- Store the groups of a workflow being enqueued: ``groups`` is JSON (ids and counts only, no
  -- user data) [{id, total, members, then, after}, ...]. A group that exists (an earlier send of
  -- this call whose reply was lost) is left as it is. Returns the keys of the groups it stored.
  local function store_groups(prefix, groups)
    local made = {}
    for _, g in ipairs(cjson.decode(groups)) do
      local gkey = group_key(prefix, g.id)
      if redis.call('EXISTS', gkey) == 0 then
        local fields = {'total', g.total, 'done', 0, 'members', g.members}
        if g['then'] then fields[#fields + 1] = 'then'; fields[#fields + 1] = g['then'] end
        if g.after then fields[#fields + 1] = 'after'; fields[#fields + 1] = g.after end
        redis.call('HSET', gkey, unpack(fields))
        made[#made + 1] = gkey
      end
    end
    return made
  end
  WORKFLOWS = {
    step_completed = step_completed, step_dead = step_dead, step_requeued = step_requeued,
    step_cancelled = step_cancelled, store_groups = store_groups,
  }
  return WORKFLOWS
end
