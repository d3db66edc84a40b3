-- A worker's steady state in one round trip: record the completion of its job and lease the
-- next one (see ack_job and claim_next).
-- KEYS: scheduled, retrying, processing, dead, wakeup, completed, counters
-- ARGV: prefix, now, lease deadline, new lease token, worker id, promote limit,
--       finished job id, its lease token, result JSON, result ttl, job ttl,
--       then the served queue names in order
-- Returns {1 or 0 (acknowledged or stale), then what claim_next returns}.
local acked = ack_job(ARGV[1], ARGV[7], ARGV[8], ARGV[2], ARGV[9], ARGV[10], ARGV[11], KEYS[3], KEYS[6], KEYS[7])
local claimed = claim_next(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], 12)
return {acked, claimed[1], claimed[2]}
