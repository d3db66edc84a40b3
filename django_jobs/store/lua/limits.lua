-- Read the rate and concurrency limits used lately (see read_limits in _flow.lua).
-- KEYS: route
-- ARGV: prefix, now, count
-- ``route``: any key of the namespace, for Cluster routing (the limits' keys are built from the
-- prefix). ``count``: the most limits to read, the latest used first.
-- Returns {{limit id, last used, level, size, per, jobs waiting}, ...}.
return flows().read_limits(A.prefix, tonumber(A.now), tonumber(A.count))
