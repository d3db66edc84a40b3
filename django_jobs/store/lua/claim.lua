-- Lease the next job of the served queues (see claim_next).
-- KEYS: scheduled, retrying, processing, dead, wakeup
-- ARGV: prefix, now, lease deadline, lease token, worker id, promote limit, then the served
--       queue names in order
return claim_next(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], 7)
