-- Read jobs by id, with their results.
-- KEYS: route
-- ARGV: prefix, *ids
-- ``route``: any key of the namespace, for Cluster routing (the job keys are built from the
-- prefix). Returns {id, record, result, ...}; ids without a record are left out.
return read_jobs(A.prefix, A.ids)
