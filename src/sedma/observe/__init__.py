"""Watching sedma work: a metrics endpoint, a live dashboard, and why each adaptation happened.

- :mod:`~sedma.observe.prom`: the Prometheus figures of a run (a loop listener filling a
  ``prometheus_client`` registry) and the HTTP endpoint serving them (``--metrics-port``).
- :mod:`~sedma.observe.traffic`: the bytes a plan moves between nodes and sites per pass.
- :mod:`~sedma.observe.state`: the dashboard's picture of a run, fed by the loop (a
  listener) or read from a long-term memory store.
- :mod:`~sedma.observe.dashboard`: the dashboard's HTTP server (``--dashboard PORT``,
  ``sedma dashboard``): the static page and its JSON endpoints; the page itself is
  ``observe/static/dashboard.html``.
- :mod:`~sedma.observe.serve`: an HTTP server on a daemon thread, closed by ``with``.
- :mod:`~sedma.observe.why`: ``sedma why ID``: one stored decision explained from long-term
  memory (what the loop saw, the rule, predicted against measured, what was learned).

Everything here observes through :class:`~sedma.control.listen.LoopListener` or reads the
store: the control loop does no I/O for it. The package imports nothing itself.
"""
