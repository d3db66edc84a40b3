-- Read jobs with their results: by id, or a page of one or more state structures.
-- KEYS: any key of the namespace, for Cluster routing (the others are built from the prefix)
-- ARGV: prefix, 'ids', then the job ids
--   or: prefix, 'page', queue filter ('' = all), offset, limit, then (kind, key) pairs where
--       kind is 'L' (a list, head first), 'Z' (a zset, lowest score first) or 'R' (a zset,
--       highest score first); the sources are paged as if they were one sequence.
-- Returns {id, record, result, ...}. Ids without a record are left out; a finished job's
-- record expires before its index entry, so such entries are dropped from 'R' sources.
local prefix = ARGV[1]
local ids = {}

local function matches(id)
  return ARGV[3] == '' or redis.call('HGET', job_key(prefix, id), 'queue') == ARGV[3]
end

if ARGV[2] == 'ids' then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
  for i = 6, #ARGV, 2 do
    local kind, key = ARGV[i], ARGV[i + 1]
    local need = limit - #ids
    if need <= 0 then break end
    if kind == 'L' or ARGV[3] == '' then
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
end

local out = {}
for _, id in ipairs(ids) do
  local record = redis.call('HGETALL', job_key(prefix, id))
  if #record > 0 then
    out[#out + 1] = id
    out[#out + 1] = record
    out[#out + 1] = redis.call('GET', result_key(prefix, id)) or ''
  end
end
return out
