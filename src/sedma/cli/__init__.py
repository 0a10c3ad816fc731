"""The command line (typer): argument parsing and printing only.

- :mod:`~sedma.cli.app`: the ``sedma`` entry point (``main``) and its top-level commands
  (``demo``, ``plan``, ``memory``, ``routes``, ``calibrate``; ``why`` and ``dashboard``
  mounted from :mod:`~sedma.cli.observe`).
- :mod:`~sedma.cli.bench`: the ``sedma bench ...`` commands.
- :mod:`~sedma.cli.common`: options and helpers the commands share (progress bars, JSON
  output and its checks, one-line errors).
- :mod:`~sedma.cli.ray_cmd`: ``sedma bench ray`` and ``sedma demo --backend ray``.
- :mod:`~sedma.cli.logs`: the logging set-up (``-v``, ``--log-format rich|json``).
- :mod:`~sedma.cli.render`: the tables and summaries the commands print.
- :mod:`~sedma.cli.observe`: ``sedma why``, ``sedma dashboard``, and the ``--metrics-port``
  and ``--dashboard`` options of the long-running commands; :mod:`~sedma.cli.render_why`
  prints an explanation.

The work itself is in the library (:mod:`sedma.bench`, :mod:`sedma.compute`, ...).
"""
