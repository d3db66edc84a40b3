-- A runworker supervisor stopped cleanly: its record and its index entry go (a worker that died
-- instead leaves its entry, and is listed as dead once its record expired).
-- KEYS: workers, worker
-- ARGV: id
redis.call('DEL', K.worker)
redis.call('ZREM', K.workers, A.id)
return 1
