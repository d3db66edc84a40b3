-- Read jobs by id, with their results.
-- KEYS: route
-- ARGV: prefix, result_since, *ids
-- ``route``: any key of the namespace, for Cluster routing (the job keys are built from the
-- prefix). Returns {id, record, result, ...}; ids without a record are left out; a result
-- from before ``result_since`` is expired (see read_jobs).
return read_jobs(A.prefix, A.ids, A.result_since)
