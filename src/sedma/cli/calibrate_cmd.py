"""The ``sedma calibrate`` command: profile a cluster's nodes into long-term memory, or a
device file's chip blind.

Covers: :func:`calibrate` (mounted by :mod:`sedma.cli.app`): without ``--device``, every node
of the cluster is profiled on the local backend (a digital node's rates, an rram node's error
statistics) and the figures are stored in long-term memory; with ``--device FILE``, the chip
the file describes is built and its whole profile estimated blind, printed and written to
``--json``. Does not cover: the measurements themselves (see
:mod:`sedma.compute.crossbar.calibrate` and :mod:`sedma.compute.crossbar.estimate`), the
stored calibrations' table (see :mod:`sedma.cli.render`) or the options every command
shares (see :mod:`sedma.cli.common`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sedma.cli.common import (
    ClusterOpt,
    JsonOpt,
    MemoryOpt,
    guard,
    out,
    progress_bar,
    table,
    write_json,
)
from sedma.cli.render import print_calibration

__all__ = ["calibrate"]


def calibrate(
    cluster: ClusterOpt = "paper",
    memory: MemoryOpt = None,
    seed: Annotated[int, typer.Option(help="Device seed of the local backend.")] = 0,
    device: Annotated[
        Path | None,
        typer.Option(
            "--device",
            help="A device file (one [crossbar] table): estimate its whole profile blind.",
        ),
    ] = None,
    json_path: JsonOpt = None,
    sample_arrays: Annotated[
        int, typer.Option(help="--device: arrays carrying the statistical probes.")
    ] = 8,
    reads: Annotated[int, typer.Option(help="--device: reads averaged per probe.")] = 16,
    bake_s: Annotated[
        float, typer.Option(help="--device: seconds the drift probe waits (simulated clock).")
    ] = 1e5,
) -> None:
    """Profile every node (rates and bandwidth; rram error statistics) and store the figures.

    With --device FILE: build the chip the file describes, hide the file from the
    estimator (it sees only the chip's program/read interface and its clock), estimate
    every [crossbar] key with a standard error, print them and write them to --json.
    """
    if device is not None:
        from sedma.clock import ManualClock
        from sedma.compute.crossbar.device_file import load_device_file
        from sedma.compute.crossbar.estimate import calibrate_device

        def blind() -> dict[str, Any]:
            assert device is not None
            chip = load_device_file(device).device(seed=seed, clock=ManualClock())
            est = calibrate_device(chip, sample_arrays=sample_arrays, reads=reads, bake_s=bake_s)
            return est.to_json()

        r = guard(blind)
        t = table(
            f"estimated profile of {device} (device seed {seed})",
            ("key", "estimate", "stderr"),
            left=("key",),
        )
        for key, e in r["estimates"].items():
            t.add_row(key, f"{e['value']:.5g}", f"{e['stderr']:.2g}")
        out.print(t)
        out.print(f"stuck cells found: {sum(r['stuck_per_array'])}")
        write_json(json_path, {"scenario": "calibrate", "device": str(device), "seed": seed, **r})
        return
    from sedma.clock import WallClock
    from sedma.compute.crossbar.calibrate import (
        KIND_CROSSBAR,
        KIND_DIGITAL,
        calibrate_crossbar,
        calibrate_digital,
    )
    from sedma.compute.crossbar.correction import DEFAULT
    from sedma.memory.long_term import LongTermMemory
    from sedma.runtime.local import LocalBackend
    from sedma.spec_load import load_cluster

    def go() -> list[dict[str, Any]]:
        spec = load_cluster(cluster)
        rows: list[dict[str, Any]] = []
        clock = WallClock()
        with LongTermMemory(memory) as ltm, LocalBackend(spec, seed=seed) as backend, \
                progress_bar() as progress:  # fmt: skip
            for i, node in enumerate(spec.nodes):
                device = backend.crossbar_device(node.name)
                if device is None:
                    d = calibrate_digital(backend, node.name, clock, size=384, copy_bytes=16 << 20)
                    ltm.record_calibration(node.name, KIND_DIGITAL, d.to_json(), d.t_epoch)
                    rows.append(
                        {
                            "node": node.name,
                            "kind": node.kind,
                            "matmul_gflops": d.matmul_gflops,
                            "mem_bandwidth_gbs": d.mem_bandwidth_gbs,
                        }
                    )
                else:
                    c = calibrate_crossbar(device, node.name, correction=DEFAULT, seed=seed)
                    ltm.record_calibration(node.name, KIND_CROSSBAR, c.to_json(), c.t_epoch)
                    rows.append(
                        {
                            "node": node.name,
                            "kind": node.kind,
                            "rel_error": c.rel_error,
                            "rel_error_corrected": c.rel_error_corrected,
                            "stuck_cells": sum(c.stuck_per_array),
                            "drift_per_decade": c.drift_per_decade,
                            "effective_bits": c.effective_bits,
                            "profile": c.profile,
                        }
                    )
                progress("calibrate", i + 1, len(spec.nodes))
        return rows

    rows = guard(go)
    print_calibration(cluster, rows)
