"""The command line (typer): argument parsing and printing only.

- :mod:`~sedma.cli.app`: the ``sedma`` entry point (``main``) and its top-level commands
  (``demo``, ``plan``, ``memory``, ``routes``; ``calibrate`` mounted from
  :mod:`~sedma.cli.calibrate_cmd`, ``why`` and ``dashboard`` from :mod:`~sedma.cli.observe`).
- :mod:`~sedma.cli.calibrate_cmd`: ``sedma calibrate`` (a cluster's nodes into long-term
  memory, or a device file's chip blind).
- :mod:`~sedma.cli.bench`: the ``sedma bench`` sub-app and its compute and memory benchmarks.
- :mod:`~sedma.cli.bench_comm`: ``sedma bench routes``, ``transport``, ``tls-ceiling``, ``comm``
  and ``soak``.
- :mod:`~sedma.cli.common`: options and helpers the commands share (progress bars, JSON
  output and its checks, one-line errors, result tables).
- :mod:`~sedma.cli.ray_cmd`: ``sedma bench ray`` and ``sedma demo --backend ray``.
- :mod:`~sedma.cli.logs`: the logging set-up (``-v``, ``--log-format rich|json``).
- :mod:`~sedma.cli.render`: the tables and summaries the commands print.
- :mod:`~sedma.cli.observe`: ``sedma why``, ``sedma dashboard``, and the ``--metrics-port``
  and ``--dashboard`` options of the long-running commands; :mod:`~sedma.cli.render_why`
  prints an explanation.

The work itself is in the library (:mod:`sedma.bench`, :mod:`sedma.compute`, ...).
"""
