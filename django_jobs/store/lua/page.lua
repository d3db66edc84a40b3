-- Read a page of jobs, with their results, from one or more state structures.
-- KEYS: route
-- ARGV: prefix, queue, offset, limit, *sources
-- ``route``: any key of the namespace, for Cluster routing. ``queue``: only jobs of this queue
-- ('' = all). ``sources``: (kind, key) pairs where kind is 'L' (a list, head first), 'Z' (a
-- zset, lowest score first) or 'R' (a zset, highest score first), paged as if they were one
-- sequence. Returns {id, record, result, ...}. Ids without a record are left out; a finished
-- job's record expires before its index entry, so such entries are dropped from 'R' sources.
local prefix, queue = A.prefix, A.queue
local offset, limit = tonumber(A.offset), tonumber(A.limit)
local ids = {}

local function matches(id)
  -- pcall: a job key of the wrong type matches no queue (read_jobs reads it as unreadable).
  return queue == '' or redis.pcall('HGET', job_key(prefix, id), 'queue') == queue
end

for i = 1, #A.sources, 2 do
  local kind, key = A.sources[i], A.sources[i + 1]
  local need = limit - #ids
  if need <= 0 then break end
  if kind == 'L' or queue == '' then
    -- Lists are per queue already; an unfiltered zset pages by rank.
    local len = kind == 'L' and redis.call('LLEN', key) or redis.call('ZCARD', key)
    if offset >= len then
      offset = offset - len
    else
      local page
      if kind == 'L' then
        page = redis.call('LRANGE', key, offset, offset + need - 1)
      elseif kind == 'Z' then
        page = redis.call('ZRANGE', key, offset, offset + need - 1)
      else
        page = redis.call('ZREVRANGE', key, offset, offset + need - 1)
      end
      for _, id in ipairs(page) do ids[#ids + 1] = id end
      offset = 0
    end
  else
    -- A zset of all queues filtered to one queue: walk it in chunks.
    local start, chunk = 0, 200
    while #ids < limit do
      local page = kind == 'Z' and redis.call('ZRANGE', key, start, start + chunk - 1)
        or redis.call('ZREVRANGE', key, start, start + chunk - 1)
      if #page == 0 then break end
      for _, id in ipairs(page) do
        if #ids < limit and matches(id) then
          if offset > 0 then offset = offset - 1 else ids[#ids + 1] = id end
        end
      end
      start = start + chunk
    end
  end
end
return read_jobs(prefix, ids)
