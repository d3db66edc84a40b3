-- A running scheduler says it is alive; schedulers not seen for a day are forgotten.
-- KEYS: schedulers
-- ARGV: id, now, forget_before
redis.call('ZADD', K.schedulers, A.now, A.id)
redis.call('ZREMRANGEBYSCORE', K.schedulers, '-inf', A.forget_before)
return 1
