-- Store a whole workflow (chain or group) in one call: its jobs as enqueue.lua stores them (the
-- steps that wait for others with status 'waiting') and its groups (store_groups).
-- KEYS: scheduled, wakeup
-- ARGV: prefix, keep_since, user_ttl, groups, jobs
workflows().store_groups(A.prefix, A.groups)
return enqueue_jobs(A.prefix, A.keep_since, A.user_ttl, cjson.decode(A.jobs), K.scheduled, K.wakeup)
