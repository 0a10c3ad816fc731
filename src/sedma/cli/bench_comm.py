"""The communication benchmarks of ``sedma bench`` and the soak, each with its table.

Covers: the commands ``routes``, ``transport``, ``comm`` (with ``--seeds``, one row per seed)
and ``soak`` (the wire under chaos, and jobs under node and tenant chaos), as functions that
:mod:`sedma.cli.bench` mounts on the ``bench`` sub-app. Each runs one benchmark, prints its
table and writes its JSON. Does not cover: the sub-app and the compute and memory benchmarks
(see :mod:`sedma.cli.bench`), the benchmarks themselves (see :mod:`sedma.bench`; each module
is imported inside its command, so ``sedma --help`` stays fast) or the consoles, options and
error handling every command shares (see :mod:`sedma.cli.common`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from sedma.cli.common import (
    ClusterOpt,
    JsonOpt,
    PlotOpt,
    SeedOpt,
    fail,
    fmt,
    guard,
    kv_table,
    out,
    table,
    write_json,
    write_plot_files,
)
from sedma.cli.observe import MetricsPortOpt, watching
from sedma.errors import SedmaError

if TYPE_CHECKING:
    from sedma.bench.transport_std import StdProtocol

__all__ = [
    "bench_comm_cmd",
    "bench_routes_cmd",
    "bench_soak_cmd",
    "bench_tls_ceiling_cmd",
    "bench_transport_cmd",
]


def bench_routes_cmd(json_path: JsonOpt = None, seed: SeedOpt = 0) -> None:
    """Route computation time at 1,000 and 10,000 peers (about 16 edges per peer)."""
    from sedma.bench.routes import bench_routes

    r = guard(lambda: bench_routes(seed=seed))
    out.print(kv_table("route computation (largest size)", r))
    write_json(json_path, {"scenario": "bench-routes", **r})


_TRANSPORT_ROWS = ("small_msgs_per_s", "rtt_p50_us", "rtt_p99_us", "large_mb_s",
                   "raw_socket_mb_s", "large_vs_raw", "large_intact")  # fmt: skip


def _transport_cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return fmt(value, "")


def bench_transport_cmd(
    json_path: JsonOpt = None,
    seed: SeedOpt = 0,
    protocols: Annotated[
        str,
        typer.Option(
            help="Comma-separated stacks to measure, side by side: sedma (its own handshake "
            "and records on TCP), tls (TLS 1.3, mutual, stdlib ssl), quic (aioquic over ICE)."
        ),
    ] = "sedma,tls,quic",
    rounds: Annotated[int, typer.Option(help="Timed rounds per figure (median taken).")] = 5,
) -> None:
    """Transports over loopback, side by side: small messages/s, round trips, large tensors
    against a raw socket copy."""
    from sedma.bench.transport import Sizes, bench_transport

    names = [n.strip() for n in protocols.split(",") if n.strip()]
    allowed = ("sedma", "tls", "quic")
    if not names or len(set(names)) != len(names) or any(n not in allowed for n in names):
        raise fail(
            f"--protocols: got {protocols!r}; a comma-separated subset of {', '.join(allowed)}"
        )
    results: dict[str, dict[str, object]] = {}
    for name in names:
        if name == "sedma":
            results[name] = guard(lambda: bench_transport(seed, Sizes(rounds=rounds)))
            continue
        try:
            from sedma.bench.transport_std import STD_PROTOCOLS, bench_transport_std
        except ImportError as exc:
            raise fail(
                f"--protocols {name}: needs the 'quic' extra (pip install 'sedma[quic]'): {exc}"
            ) from None
        proto = next(p for p in STD_PROTOCOLS if p == name)

        def run_std(proto: StdProtocol = proto) -> dict[str, object]:
            return bench_transport_std(proto, seed, Sizes(rounds=rounds))

        results[name] = guard(run_std)
    t = table(
        "transports over loopback (64 MiB tensors; raw = same run's TCP copy)",
        ("figure", *names),
        left=("figure",),
    )
    for row in _TRANSPORT_ROWS:
        t.add_row(row, *(_transport_cell(results[n].get(row)) for n in names))
    out.print(t)
    doc: dict[str, object] = {"scenario": "bench-transport", "protocols": results}
    write_json(json_path, {**doc, **results.get("sedma", {})})


def bench_tls_ceiling_cmd(
    json_path: JsonOpt = None,
    seed: SeedOpt = 0,
    size_mib: Annotated[int, typer.Option(help="MiB per message.")] = 64,
    rounds: Annotated[int, typer.Option(help="Rounds per stack (the best one counts).")] = 8,
) -> None:
    """The most TLS 1.3 carries here (blocking sockets, reused buffers) against a raw socket:
    the ceiling of any TLS endpoint in Python, for issue 15's bar of 0.5x."""
    from sedma.bench.tls_ceiling import tls_ceiling

    if size_mib < 1 or rounds < 1:
        raise fail(f"--size-mib and --rounds must be >= 1; got {size_mib} and {rounds}")
    r = guard(lambda: tls_ceiling(size_bytes=size_mib << 20, rounds=rounds, seed=seed))
    out.print(kv_table("TLS 1.3 ceiling over loopback (best round of each)", r))
    write_json(json_path, r)


def bench_comm_cmd(
    json_path: JsonOpt = None,
    cluster: ClusterOpt = "paper",
    messages: Annotated[int, typer.Option(help="Work items per system.")] = 2000,
    seed: SeedOpt = 0,
    seeds: Annotated[
        str | None,
        typer.Option(help="Run once per seed and print one row each: '0-9' or '0,3,7'."),
    ] = None,
    plot: PlotOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Message latency under uneven memory pressure: sedma's peer selection vs static
    routing and vs Ray's hybrid-like choice (nearest peer with a free slot)."""
    from sedma.bench.comm import bench_comm, bench_comm_seeds
    from sedma.spec_load import load_cluster

    if seeds is not None:
        ss = guard(lambda: _seed_list(seeds))
        r = guard(lambda: bench_comm_seeds(load_cluster(cluster), seeds=ss, messages=messages))
        _print_seed_table(r)
        write_json(json_path, r)
        write_plot_files(plot, r)
        return
    with watching(metrics_port) as w:
        r = guard(
            lambda: bench_comm(
                load_cluster(cluster), messages=messages, seed=seed, watch=w.transport
            )
        )
    t = table(
        f"message latency on {cluster} under uneven memory pressure",
        ("system", "mean ms", "p50 ms", "p99 ms", "violations", "max pressure"),
        left=("system",),
    )
    for name in ("sedma", "static", "ray"):
        s = r["systems"][name]
        lat = s["latency_ms"]
        t.add_row(
            name,
            f"{lat['mean']:.1f}",
            f"{lat['p50']:.1f}",
            f"{lat['p99']:.1f}",
            str(s["violations"]),
            f"{s['max_pressure']:.2f}",
        )
    out.print(t)
    if r["p99_ratio"] is None or r["mean_reduction"] is None or r["floor_ms"] is None:
        out.print(f"no ratios (a system sent or answered nothing); target met: {r['meets_target']}")
    else:
        if r["ray_p99_ratio"] is not None and r["ray_mean_reduction"] is not None:
            out.print(
                f"against ray (nearest with a free slot): p99 {r['ray_p99_ratio']:.2f}x lower, "
                f"mean {100 * r['ray_mean_reduction']:.0f}% lower"
            )
        out.print(
            f"against static: p99 {r['p99_ratio']:.2f}x lower, "
            f"mean {100 * r['mean_reduction']:.0f}% lower; "
            f"target met: {r['meets_target']} (attainable: {r['target_attainable']} against "
            f"the bound, {r['target_attainable_with_floor']} with the measured "
            f"{r['floor_ms']:.1f} ms transport floor)"
        )
    write_json(json_path, {"scenario": "bench-comm", **r})
    write_plot_files(plot, {"scenario": "bench-comm", **r})


def _seed_list(text: str) -> list[int]:
    """'0-9' or '0,3,7' (or a mix: '0-2,5') as a list of seeds."""
    try:
        out: list[int] = []
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    except ValueError:
        raise SedmaError(f"--seeds got {text!r}; expected e.g. '0-9' or '0,3,7'") from None
    return out


def _print_seed_table(r: dict[str, Any]) -> None:
    def f(x: float | None, spec: str) -> str:  # a run with nothing answered has no figure
        return "-" if x is None else format(x, spec)

    def yn(x: bool) -> str:
        return "yes" if x else "no"

    cols = ("seed", "sedma mean", "sedma p99", "static mean", "static p99", "p99 ratio")
    t = table(
        f"message latency on {r['cluster']}, {r['messages']} items, by seed",
        (*cols, "mean cut", "met", "ray p99", "vs ray", "bound ratio", "bound cut", "floor ms",
         "attainable"),
    )  # fmt: skip
    for row in r["rows"]:
        t.add_row(
            str(row["seed"]),
            f(row["sedma_mean_ms"], ".1f"),
            f(row["sedma_p99_ms"], ".1f"),
            f(row["static_mean_ms"], ".1f"),
            f(row["static_p99_ms"], ".1f"),
            f(row["p99_ratio"], ".2f"),
            f(None if row["mean_reduction"] is None else 100 * row["mean_reduction"], ".1f") + "%",
            yn(row["meets_target"]),
            f(row.get("ray_p99_ms"), ".1f"),
            f(row.get("ray_p99_ratio"), ".2f"),
            f(row["bound_p99_ratio"], ".2f"),
            f(
                None if row["bound_mean_reduction"] is None else 100 * row["bound_mean_reduction"],
                ".1f",
            )
            + "%",
            f(row["floor_ms"], ".1f"),
            f"{yn(row['target_attainable'])}/{yn(row['target_attainable_with_floor'])}",
        )
    out.print(t)
    n = len(r["rows"])
    out.print(
        f"target met at {r['met']} of {n} seeds; attainable at {r['attainable']} against the "
        f"bound, at {r['attainable_with_floor']} against the bound plus the measured floor",
        highlight=False,
    )


def bench_soak_cmd(
    json_path: JsonOpt = None,
    minutes: Annotated[float, typer.Option(help="How long messages flow under chaos.")] = 2.0,
    peers: Annotated[int, typer.Option(help="Peers on loopback (plus one relay).")] = 6,
    seed: Annotated[
        int, typer.Option(help="Seed of the chaos schedule (which peer, link, when).")
    ] = 0,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Soak and chaos: peers killed and restarted, links degraded, relays lost, while messages
    flow; nodes slowing and failing and tenants taking memory, while jobs flow."""
    from sedma.bench.soak import bench_soak

    with watching(metrics_port) as w:
        r = guard(lambda: bench_soak(minutes, seed=seed, peers=peers, watch=w.transport))
    _print_soak(r)
    write_json(json_path, {"scenario": "bench-soak", **r})


def _print_soak(r: dict[str, Any]) -> None:
    """The soak's figures, the channels still holding messages when the drain gave up (none
    when it drained), then the jobs' figures and the job chaos injected."""
    out.print(kv_table("soak (loopback)", {k: v for k, v in r.items() if k != "rss_mb"}))
    held = r["undrained_channels"]
    if not r["drained"] and held:
        t = table(
            f"channels holding messages when the drain gave up ({len(held)})",
            ("channel", "unacked", "paths", "plan", "redialling", "receiver", "last event"),
            left=("channel", "last event"),
            compact=True,
        )
        for name, ch in held.items():
            t.add_row(
                name,
                str(ch["unacked"]),
                str(ch["paths"]),
                "yes" if ch["dial_plan"] else "no",
                "yes" if ch["redialling"] else "no",
                "alive" if ch["receiver_alive"] else "dead",
                fmt(ch["last_event"], ""),
            )
        out.print(t)
    jobs = r["jobs"]
    out.print(kv_table("jobs under node and tenant chaos (sim backend)", jobs))
    out.print(kv_table("job chaos injected", jobs["chaos"]))
