"""The Prometheus endpoint: scraped during a run, parsed by the official parser."""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from clusters import small_few_arrays
from sedma.bench.compare import CompareConfig, run_comparison
from sedma.cli.app import app
from sedma.errors import SedmaError
from sedma.observe.prom import LoopMetrics, MetricsServer, TransportCollector, parse_listen

runner = CliRunner()

# Prometheus naming: base units spelled out as the last word(s) before _total.
UNITS = ("_seconds", "_bytes", "_ratio", "_per_second", "_total")
UNITLESS = {  # counts and flags, which have no unit
    "sedma_adaptation_outcomes_pending",
    "sedma_node_planned_tiles",
    "sedma_node_failed",
    "sedma_transport_nodes",
}


def scrape(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    fam = families[name]
    sample_names = {name, name + "_total"}
    got = [
        s.value
        for s in fam.samples
        if s.name in sample_names and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert got, (name, labels, fam.samples)
    return float(sum(got))


def test_metrics_are_scraped_during_a_demo_run_and_follow_prometheus_naming(tmp_path: Path) -> None:
    metrics = LoopMetrics()
    passes = 10
    # sedma's loop is what is scraped; on the 64-array chip its start-up calibration is cheap
    # (the static split, which pads tiles to whole arrays, does not fit it and is reported so)
    cfg = CompareConfig(cluster=small_few_arrays(), scale=0.25, passes=passes, static_passes=2,
                        memory=tmp_path / "m.db", comm_messages=0)  # fmt: skip
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(run_comparison(cfg, listeners=[metrics]))

    with MetricsServer(metrics.registry, "127.0.0.1", 0) as server:
        worker = threading.Thread(target=run)
        worker.start()
        during = None
        deadline = time.monotonic() + 300
        while worker.is_alive() and time.monotonic() < deadline:
            fams = scrape(server.url)
            if "sedma_passes" in fams and value(fams, "sedma_passes") >= 3:
                during = fams
                alive_at_scrape = worker.is_alive()
                break
            time.sleep(0.2)
        worker.join()
        after = scrape(server.url)
    assert during is not None and alive_at_scrape, "never scraped while the run was going"
    assert 3 <= value(during, "sedma_passes") < passes

    for name, fam in after.items():
        if name.endswith("_created"):  # the client's creation stamps, not our figures
            continue
        assert name.startswith("sedma_"), name
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", name), name
        full = name + ("_total" if fam.type == "counter" else "")
        assert full.endswith(UNITS) or name in UNITLESS, name
        assert not re.search(r"_(ms|milliseconds|gib|mib|kib|gflops)(_|$)", name), name
        if fam.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples), name

    # the figures are the run's: every pass counted, the nodes and links of the cluster
    assert value(after, "sedma_passes") == passes == result["systems"]["sedma"]["passes"]
    hist = after["sedma_pass_duration_seconds"]
    count = next(s.value for s in hist.samples if s.name.endswith("_count"))
    total = next(s.value for s in hist.samples if s.name.endswith("_sum"))
    assert count >= passes - 1  # one per interval that ran a pass
    # the loop's pass times: the device clock's, each lane's share of it where the plan has
    # several (replicas run side by side); the result's makespan is the clock's, one pass
    # at a time
    sedma_s = result["systems"]["sedma"]["makespan_s"]
    lanes = result["systems"]["sedma"]["lanes"]
    if lanes == 1:
        assert total == pytest.approx(sedma_s, rel=0.35)
    else:
        assert 0 < total < sedma_s
    assert value(after, "sedma_loop_intervals") >= passes
    nodes = {"gpu", "cpu-0", "cpu-1", "rram", "edge"}
    util = {s.labels["node"]: s.value for s in after["sedma_node_utilization_ratio"].samples}
    ran = set(util)  # the nodes sedma's plans used (its replicas leave the rram chip out)
    assert ran and ran <= nodes and all(0.0 <= u <= 1.0 for u in util.values())
    assert all(value(after, "sedma_node_busy_seconds", node=n) > 0 for n in ran)
    assert all(value(after, "sedma_node_measured_flops_per_second", node=n) > 1e9 for n in ran)
    assert value(after, "sedma_job_held_bytes") > 0
    assert value(after, "sedma_link_transfer_bytes", src_site="dc", dst_site="dc") > 0
    accepted = sum(1 for d in result["decisions"] if d["accepted"])
    assert value(after, "sedma_adaptations", outcome="accepted") == accepted
    assert (
        value(after, "sedma_adaptations", layer="compute", kind="replan", outcome="accepted") >= 1
    )
    # every re-plan is measured by the end, but one decided after the last pass has no pass
    # after it to be measured by
    unmeasured = sum(
        1 for d in result["decisions"]
        if d["accepted"] and d["kind"] == "replan" and d["interval"] == passes
    )  # fmt: skip
    assert value(after, "sedma_adaptation_outcomes_pending") == unmeasured
    lat = after["sedma_decision_latency_seconds"]
    assert next(s.value for s in lat.samples if s.name.endswith("_count")) >= passes


def test_transport_counters_are_read_from_live_nodes_at_scrape_time() -> None:
    live = {"p0": {"sent": 3, "received": 2, "bytes_sent": 300, "bytes_received": 200,
                   "dropped_replay": 1, "reversals_dialled": 4}}  # fmt: skip
    metrics = LoopMetrics()
    metrics.registry.register(TransportCollector(lambda: live))
    with MetricsServer(metrics.registry, "127.0.0.1", 0) as server:
        fams = scrape(server.url)
        live["p0"]["sent"] = 5
        again = scrape(server.url)
    assert value(fams, "sedma_transport_sent_messages", node="p0") == 3
    assert value(again, "sedma_transport_sent_messages", node="p0") == 5
    assert value(fams, "sedma_transport_received_bytes", node="p0") == 200
    assert value(fams, "sedma_transport_dropped_records", node="p0", reason="dropped_replay") == 1
    assert value(fams, "sedma_transport_nodes") == 1


@pytest.mark.parametrize(
    ("value_", "message"),
    [
        ("nope", "--metrics-port: got 'nope'"),
        ("70000", "0 <= PORT <= 65535"),
        (":80", "must be PORT or HOST:PORT"),
    ],
)
def test_a_bad_metrics_port_is_one_clear_error_before_any_work(
    value_: str, message: str, tmp_path: Path
) -> None:
    r = runner.invoke(app, ["demo", "--memory", str(tmp_path / "m.db"), "--metrics-port", value_])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "m.db").exists()  # refused before the work started


def test_a_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = runner.invoke(app, ["demo", "--memory", str(tmp_path / "m.db"),
                                "--metrics-port", str(port)])  # fmt: skip
    assert r.exit_code == 2
    assert f"--metrics-port: cannot listen on 127.0.0.1:{port}" in r.output


def test_parse_listen_takes_a_port_or_host_and_port() -> None:
    assert parse_listen("--x", "9100") == ("127.0.0.1", 9100)
    assert parse_listen("--x", "0.0.0.0:9100") == ("0.0.0.0", 9100)
    with pytest.raises(SedmaError, match="--x: got '-1'"):
        parse_listen("--x", "-1")


@pytest.mark.heavy
def test_bench_soak_serves_the_transport_counters_while_it_runs() -> None:
    from sedma.bench.soak import bench_soak

    metrics = LoopMetrics()
    with MetricsServer(metrics.registry, "127.0.0.1", 0) as server:
        seen: dict[str, Any] = {}

        def watch(source: Any) -> None:
            metrics.registry.register(TransportCollector(source))

        # three seconds of soak: hundreds of messages, far more than the scrape waits for
        minutes = 0.05
        worker = threading.Thread(
            target=lambda: seen.update(bench_soak(minutes, peers=3, watch=watch))
        )
        worker.start()
        during = None
        while worker.is_alive():
            fams = scrape(server.url)
            if (
                "sedma_transport_sent_messages" in fams
                and value(fams, "sedma_transport_sent_messages") > 10
            ):
                during = fams
                break
            time.sleep(0.3)
        worker.join()
    assert during is not None
    assert value(during, "sedma_transport_received_bytes") > 0
    assert seen["accepted"] > 0  # the soak's own accounting is tested in test_soak


def test_a_failing_listener_is_logged_and_dropped_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sedma.control.listen import Listeners, LoopListener
    from sedma.control.loop_types import Decision

    class Broken(LoopListener):
        def decided(self, decision: Decision) -> None:
            raise RuntimeError("observer bug")

    class Counting(LoopListener):
        def __init__(self) -> None:
            self.n = 0

        def decided(self, decision: Decision) -> None:
            self.n += 1

    good = Counting()
    fan = Listeners([Broken(), good])
    d = Decision(0.0, 1, "compute", "replan", True, "r", 0.1)
    fan.decided(d)
    fan.decided(d)
    assert good.n == 2
    dropped = [r for r in caplog.records if "failed in decided; dropped" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].levelname == "WARNING"  # once, then gone
