-- Move due delayed and retrying jobs to their lists.
-- KEYS: scheduled, retrying, dead, wakeup
-- ARGV: prefix, now, limit
local ready = promote(ARGV[1], KEYS[1], KEYS[3], ARGV[2], ARGV[3])
  + promote(ARGV[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3])
wake(KEYS[4], ready)
return ready
