-- Record a completion (see ack_job).
-- KEYS: job, processing, result, completed, counters (job and result: for Cluster routing)
-- ARGV: prefix, id, lease token, now, result JSON, result ttl, job ttl
return ack_job(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], KEYS[2], KEYS[4], KEYS[5])
