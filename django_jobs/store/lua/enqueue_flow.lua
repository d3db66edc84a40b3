-- Store a whole workflow (chain or group) in one call: its jobs as enqueue.lua stores them (the
-- steps that wait for others with status 'waiting') and its groups (store_groups).
-- KEYS: scheduled, wakeup
-- ARGV: prefix, keep_since, user_ttl, groups, jobs
-- All or nothing: when Redis refuses the jobs (a key of the wrong type, see _enqueue.lua) the
-- groups this call stored go too, and the error reply names the key.
local made = workflows().store_groups(A.prefix, A.groups)
local reply = enqueue_jobs(A.prefix, A.keep_since, A.user_ttl, cjson.decode(A.jobs), K.scheduled, K.wakeup)
if reply.err then
  for _, gkey in ipairs(made) do redis.call('DEL', gkey) end
end
return reply
