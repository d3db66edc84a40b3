-- A runworker supervisor says it is alive: its record, which expires unless refreshed, and its
-- entry in the index of workers (score = last beat). Index entries not refreshed since
-- ``forget_before`` (dead workers are listed for an hour) are dropped.
-- KEYS: workers, worker
-- ARGV: id, now, ttl_ms, forget_before, *fields
-- ``fields``: the record as field/value pairs (always the same fields: nothing stale is left).
redis.call('HSET', K.worker, unpack(A.fields))
redis.call('PEXPIRE', K.worker, A.ttl_ms)
redis.call('ZADD', K.workers, A.now, A.id)
redis.call('ZREMRANGEBYSCORE', K.workers, '-inf', '(' .. A.forget_before)
return 1
