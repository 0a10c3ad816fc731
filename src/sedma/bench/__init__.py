"""Benchmarks and comparisons; each returns the result JSON as a dict.

- :mod:`~sedma.bench.compare`: sedma vs the static baseline vs the bound (``sedma demo``).
- :mod:`~sedma.bench.clusters`: the same comparison over presets and seeded random clusters.
- :mod:`~sedma.bench.partition`: the partitioner's time at 100 to 10,000 nodes.
- :mod:`~sedma.bench.memory`: short-term update cost and long-term write rate.
- :mod:`~sedma.bench.crossbar`, :mod:`~sedma.bench.accuracy`: the crossbar simulator; a real
  model on rram.
- :mod:`~sedma.bench.routes`, :mod:`~sedma.bench.transport`, :mod:`~sedma.bench.comm` (with
  :mod:`~sedma.bench.comm_run`, one system's pass, and :mod:`~sedma.bench.comm_report`): routes,
  the transport, message latency under memory pressure.
- :mod:`~sedma.bench.ray_baseline`: the plain-Ray programs (chunked dynamic tasks,
  data-parallel actors) as the cost model's tasks, for the ``ray`` baseline.
- :mod:`~sedma.bench.costed`: every system side by side with every cost charged
  (``sedma bench costed``; the sim backend's rules; the ``sedma demo`` headline, composed by
  :mod:`~sedma.bench.demo`), each system's steady rate measured by
  :mod:`~sedma.bench.steady`.
- :mod:`~sedma.bench.growth`: the same comparison over a decode run whose context (and KV
  cache) grows, phase by phase (``sedma bench growth``), with sedma's column from one loop
  through the whole decode (:mod:`~sedma.bench.growth_loop`), its migrations charged.
- :mod:`~sedma.bench.decode`: a decode whose cache grows, computed for real on the local
  backend or a Ray cluster, sedma's loop following it (``sedma decode``); whether a real run
  fits this host is :mod:`~sedma.bench.host_memory`'s.
- :mod:`~sedma.bench.soak`: the wire under chaos (peers killed, links degraded, relays lost):
  what was lost, duplicated or reordered, memory over time.
"""
