-- Record how far a running job is (a small JSON object, see django_jobs/progress.py); only the
-- holder of the current lease may, so a stale worker can never overwrite a newer attempt's.
-- KEYS: job
-- ARGV: token, progress
-- Returns 1, or 0 when the job is not running under ``token``.
local f = redis.pcall('HMGET', K.job, 'status', 'lease_token')
if f.err or f[1] ~= 'running' or f[2] ~= A.token then return 0 end
redis.call('HSET', K.job, 'progress', A.progress)
return 1
