-- Move due delayed and retrying jobs to their lists.
-- KEYS: scheduled, retrying, dead, wakeup
-- ARGV: prefix, now, limit
local ready = promote(A.prefix, K.scheduled, K.dead, A.now, A.limit)
  + promote(A.prefix, K.retrying, K.dead, A.now, A.limit)
wake(K.wakeup, ready)
return ready
