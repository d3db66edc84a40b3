-- The workers whose last heartbeat is at ``since`` or later (see read_workers in _lib.lua).
-- KEYS: workers
-- ARGV: prefix, since
return read_workers(K.workers, A.prefix, A.since)
