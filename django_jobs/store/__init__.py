"""The one seam to Redis: the connection (:mod:`~.connection`), the key layout (:mod:`~.keys`),
the Lua scripts (:mod:`~.scripts`, ``lua/``), one named Python call per script
(:mod:`~.calls`) and the code that sends them and translates Redis errors (:mod:`~.execute`).
Nothing outside this package talks to Redis."""
