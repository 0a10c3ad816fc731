"""The ``sedma decode`` command: a decode whose KV cache grows, computed for real, on this
machine or a Ray cluster, with sedma's loop following the cache.

Covers: :func:`decode` (mounted by :mod:`sedma.cli.app`) and its table: one row per step of
``--every`` tokens (the context it ends at, its rate in device time, the error of its
checked pass, the bytes held, the nodes used, what the loop did as the cache grew). Does not
cover: the run itself (see :mod:`sedma.bench.decode`), the costed comparison as the cache
grows (``sedma bench growth``, :mod:`sedma.cli.bench`) or the options every command shares
(see :mod:`sedma.cli.common`).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sedma.cli.common import (
    ClusterOpt,
    JsonOpt,
    MemoryOpt,
    NoLearnOpt,
    SeedOpt,
    fail,
    fmt,
    guard,
    out,
    progress_bar,
    table,
    write_json,
)

__all__ = ["decode"]


def decode(
    cluster: ClusterOpt = "edge-swarm",
    workload: Annotated[
        str, typer.Option("--workload", "-w", help="A decoder: tinyllama-1.1b or llama-7b.")
    ] = "tinyllama-1.1b",
    start: Annotated[int, typer.Option(help="Tokens each sequence holds at the start.")] = 256,
    stop: Annotated[int, typer.Option(help="Tokens each sequence holds at the end.")] = 320,
    every: Annotated[
        int, typer.Option(min=1, help="Tokens between two growths told to the loop.")
    ] = 16,
    backend: Annotated[
        str, typer.Option(help="local (embedded, the default), or ray: a Ray cluster.")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="--backend ray: join this Ray cluster (default: local).")
    ] = None,
    seed: SeedOpt = 0,
    memory: MemoryOpt = None,
    no_learn: NoLearnOpt = False,
    fail_node: Annotated[
        str | None, typer.Option(help="A node that dies mid-decode: the loop re-plans around it.")
    ] = None,
    fail_at: Annotated[
        int | None, typer.Option(help="--fail-node: the pass before which it dies (half-way).")
    ] = None,
    json_path: JsonOpt = None,
) -> None:
    """Decode for real, one pass per token, while the KV cache grows: sedma's loop re-sizes
    its plan or re-plans every --every tokens, and the first pass of every plan it adopts
    (after a growth, a re-plan, or a node dying: --fail-node) is checked against the exact
    products."""
    from sedma.bench.decode import DecodeConfig, run_decode

    if backend not in ("local", "ray"):
        raise fail(f"--backend: got {backend!r}; allowed: local, ray")

    def go() -> dict[str, Any]:
        cfg = DecodeConfig(
            cluster=cluster,
            workload=workload,
            start=start,
            stop=stop,
            every=every,
            backend="ray" if backend == "ray" else "local",
            address=address,
            seed=seed,
            memory=memory,
            learn=not no_learn,
            fail_node=fail_node,
            fail_at=fail_at,
        )
        with progress_bar() as progress:
            return run_decode(cfg, progress=progress)

    result = guard(go)
    print_decode(result)
    write_json(json_path, result)


def print_decode(r: dict[str, Any]) -> None:
    """The steps' table and the run's figures."""
    t = table(
        f"{r['workload']} on {r['cluster']}: decoding from {r['start']} to {r['stop']} tokens "
        f"({r['backend']} backend, device time)",
        ("context", "passes/s", "rel error", "held GB", "nodes", "as the cache grew"),
        left=("nodes", "as the cache grew"),
    )
    for s in r["steps"]:
        grew = [d for d in s["decisions"] if "cache grew" in d["reason"]]
        did = "; ".join(("" if d["accepted"] else "not ") + d["kind"] for d in grew) or (
            "started" if s is r["steps"][0] else "-"
        )
        t.add_row(
            str(s["context"]),
            fmt(s["throughput_ops_s"], "ops"),
            fmt(s["rel_error"], "err"),
            f"{s['held_bytes'] / 1e9:.2f}",
            str(len(s["nodes"])),
            did,
        )
    out.print(t)
    fault = r.get("fault")
    if fault is not None:
        out.print(
            f"{fault['node']} died before pass {fault['at_pass']}: the loop re-planned "
            "without it, and the pass ran again on the new plan (checked)",
            highlight=False,
        )
    me = r["systems"]["sedma"]
    out.print(
        f"{me['passes']} passes, {fmt(me['throughput_ops_s'], 'ops')} passes/s in device "
        f"time; largest checked error {fmt(me['rel_error'], 'err')} over "
        f"{me['checked_passes']} checked passes (within budget: "
        f"{'yes' if me['meets_error_budget'] else 'no'}); {me['adaptations']} adaptations",
        highlight=False,
    )
