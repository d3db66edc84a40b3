-- Read a page of jobs, with their results, from one or more state structures read as one
-- sequence, from position ``cursor`` on.
-- KEYS: route
-- ARGV: prefix, result_since, cursor, limit, scan_limit, parked_lists, queue, name, status, *sources
-- ``route``: any key of the namespace, for Cluster routing. ``sources``: (kind, key) pairs where
-- kind is 'L' (a list, head first), 'Z' (a zset, lowest score first), 'R' (a zset, highest
-- score first) or 'P': the waiting lists of the jobs a limit holds back (see _flow.lua) whose
-- index member starts with ``key``, '<priority>|<queue>', each read as an 'L', in the order
-- of the index (the soonest a claim looks at first, as claims take them). Only the first
-- ``parked_lists`` members of the index are read, the same ones for every 'P' of the call, so
-- that a call stays bounded however many limits hold jobs back; those after them are left out.
-- Filters ('' = none): ``queue`` applies to zsets (lists are per queue already),
-- ``name`` and ``status`` to every entry. Where no filter applies a source is read by rank
-- (O(log N + limit)); where one does, the entries are looked at one by one, at most
-- ``scan_limit`` of them in this call, so that every call is bounded. ``result_since``: see
-- read_jobs.
-- Returns {jobs as read_jobs reads them, the position after the last entry looked at (-1 when
-- that was the sequence's last), the entries in the sources, the entries looked at, the members
-- of the parked index left out (0 without a 'P' source)}. Ids
-- without a record are left out; a finished job's record expires before its index entry.
local prefix, queue, name, status = A.prefix, A.queue, A.name, A.status
local cursor, limit, scan_limit = tonumber(A.cursor), tonumber(A.limit), tonumber(A.scan_limit)
local CHUNK = 500

-- The sources with each 'P' replaced by its waiting lists ('L'), and how many members of the
-- parked index were left out. The index is read once, and only if a 'P' asks for it.
local function expand(sources)
  local out, groups, left_out = {}, nil, 0
  for i = 1, #sources, 2 do
    local kind, key = sources[i], sources[i + 1]
    if kind ~= 'P' then
      out[#out + 1] = kind
      out[#out + 1] = key
    else
      if not groups then
        groups = {}
        local lists
        lists, left_out = flows().parked_lists(prefix, tonumber(A.parked_lists))
        for _, list in ipairs(lists) do
          local where = list[1]
          groups[where] = groups[where] or {}
          table.insert(groups[where], list[2])
        end
      end
      for _, member in ipairs(groups[key] or {}) do
        out[#out + 1] = 'L'
        out[#out + 1] = flows().waiting_key(prefix, member)
      end
    end
  end
  return out, left_out
end
local sources, left_out = expand(A.sources)

local function length(kind, key)
  if kind == 'L' then return redis.call('LLEN', key) end
  return redis.call('ZCARD', key)
end

local function range(kind, key, first, last)
  if kind == 'L' then return redis.call('LRANGE', key, first, last) end
  if kind == 'Z' then return redis.call('ZRANGE', key, first, last) end
  return redis.call('ZREVRANGE', key, first, last)
end

local function matches(id, check_queue)
  -- pcall: a job key of the wrong type matches no filter (read_jobs reads it as unreadable).
  local f = redis.pcall('HMGET', job_key(prefix, id), 'queue', 'name', 'status')
  if f.err then return false end
  return (not check_queue or f[1] == queue) and (name == '' or f[2] == name)
    and (status == '' or f[3] == status)
end

local lengths, total = {}, 0
for i = 1, #sources, 2 do
  lengths[i] = length(sources[i], sources[i + 1])
  total = total + lengths[i]
end

local ids, scanned, base, pos = {}, 0, 0, cursor
for i = 1, #sources, 2 do
  if #ids >= limit or scanned >= scan_limit then break end
  local kind, key, len = sources[i], sources[i + 1], lengths[i]
  if pos < base + len then
    local at = pos - base  -- where in this source the walk goes on
    local check_queue = kind ~= 'L' and queue ~= ''
    if not check_queue and name == '' and status == '' then
      local page = range(kind, key, at, at + limit - #ids - 1)
      for _, id in ipairs(page) do ids[#ids + 1] = id end
      scanned = scanned + #page
      at = at + #page
    else
      while at < len and #ids < limit and scanned < scan_limit do
        local page = range(kind, key, at, at + math.min(CHUNK, scan_limit - scanned) - 1)
        if #page == 0 then break end
        for _, id in ipairs(page) do
          scanned = scanned + 1
          at = at + 1
          if matches(id, check_queue) then
            ids[#ids + 1] = id
            if #ids >= limit then break end
          end
        end
      end
    end
    pos = base + at
  end
  base = base + len
end
if pos >= total then pos = -1 end
return {read_jobs(prefix, ids, A.result_since), pos, total, scanned, left_out}
