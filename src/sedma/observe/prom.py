"""The Prometheus figures of a run, and the endpoint that serves them (``--metrics-port``).

Covers: :class:`LoopMetrics`, a :class:`~sedma.control.listen.LoopListener` that keeps the
loop's, the nodes' and the links' figures in a ``prometheus_client`` registry as the run
goes (passes, throughput, decision latency, adaptations by layer, kind and outcome, their
predicted and measured gains, outcomes still pending; per node its measured rate, busy
time, utilisation, bytes held and free, planned tiles; per pair of sites the bytes the plan
moves); :class:`TransportCollector`, the transport's counters (messages and bytes sent and
received, drops, duplicates) read from live peers at scrape time; :func:`parse_listen`
(``PORT`` or ``HOST:PORT``) and :class:`MetricsServer`, the HTTP endpoint on its own thread.

Names follow Prometheus' rules: a ``sedma_`` prefix, base units (seconds, bytes, ratios
0..1), ``_total`` on counters, units in the name. Pass durations are device seconds (the
backend's clock: emulated time on emulating backends); decision latency is wall seconds of
this process (the injected ``clock``). Does not cover: the dashboard (see
:mod:`sedma.observe.dashboard`) or what the figures mean (see :mod:`sedma.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sedma.clock import Clock, WallClock
from sedma.compute.plan import Plan
from sedma.control.executor import JOB
from sedma.control.listen import IntervalReport, LoopListener, LoopStart, Outcome
from sedma.control.loop_types import Decision
from sedma.errors import SedmaError
from sedma.observe.serve import ServerThread
from sedma.observe.traffic import node_traffic, site_traffic
from sedma.spec import ClusterSpec

__all__ = ["LoopMetrics", "MetricsServer", "TransportCollector", "parse_listen"]

_DEVICE_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_WALL_BUCKETS = (1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class LoopMetrics(LoopListener):
    """A control loop's figures in ``registry`` (a fresh one if None), updated as it runs."""

    def __init__(self, registry: CollectorRegistry | None = None, clock: Clock | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock if clock is not None else WallClock()
        self._step_t0: float | None = None
        self._spec: ClusterSpec | None = None
        self._traffic: dict[tuple[str, str], float] = {}
        self._sent: dict[str, float] = {}
        self._plan: Plan | None = None
        self._pending = 0  # as of the last interval, less the outcomes measured since
        r = self.registry
        self.passes = Counter("sedma_passes", "Passes of the workload completed.", registry=r)
        self.pass_s = Histogram(
            "sedma_pass_duration_seconds",
            "Device seconds per pass (the backend's clock; a lane's share of it, for a plan of "
            "several lanes, as the loop counts it).",
            buckets=_DEVICE_BUCKETS,
            registry=r,
        )
        self.throughput = Gauge(
            "sedma_throughput_passes_per_second",
            "Passes per device second over the last interval.",
            registry=r,
        )
        self.intervals = Counter("sedma_loop_intervals", "Control-loop steps run.", registry=r)
        self.latency = Histogram(
            "sedma_decision_latency_seconds",
            "Wall seconds of one Collect -> Analyze -> Adapt step, enacting included.",
            buckets=_WALL_BUCKETS,
            registry=r,
        )
        labels = ("layer", "kind", "outcome")
        self.decisions = Counter(
            "sedma_adaptations",
            "Decisions of the loop by layer, kind and outcome (accepted or rejected).",
            labels,
            registry=r,
        )
        self.predicted = Gauge(
            "sedma_adaptation_predicted_gain_ratio",
            "Predicted gain of the last accepted adaptation of this layer and kind.",
            ("layer", "kind"),
            registry=r,
        )
        self.measured_gain = Gauge(
            "sedma_adaptation_measured_gain_ratio",
            "Measured gain of the last adaptation of this layer and kind whose outcome is in.",
            ("layer", "kind"),
            registry=r,
        )
        self.pending = Gauge(
            "sedma_adaptation_outcomes_pending",
            "Accepted re-plans whose outcome is still being measured (the outcome queue).",
            registry=r,
        )
        self.held = Gauge(
            "sedma_job_held_bytes", "Bytes held for the job across its nodes.", registry=r
        )
        node = ("node",)
        self.rate = Gauge(
            "sedma_node_measured_flops_per_second",
            "A node's matrix-multiply rate measured in the last interval (FLOP per device s).",
            node,
            registry=r,
        )
        self.busy = Counter(
            "sedma_node_busy_seconds", "Device seconds a node spent on tiles.", node, registry=r
        )
        self.util = Gauge(
            "sedma_node_utilization_ratio",
            "A node's busy seconds over the last interval's pass time (0..1).",
            node,
            registry=r,
        )
        self.node_held = Gauge(
            "sedma_node_held_bytes", "Bytes a node holds for the job.", node, registry=r
        )
        self.node_free = Gauge(
            "sedma_node_free_bytes", "A node's free memory as reported.", node, registry=r
        )
        self.tiles = Gauge(
            "sedma_node_planned_tiles", "Tiles the current plan puts on a node.", node, registry=r
        )
        self.failed = Gauge(
            "sedma_node_failed", "1 if the node was reported failed.", node, registry=r
        )
        self.node_sent = Counter(
            "sedma_node_transfer_sent_bytes",
            "Bytes a node's tiles sent to other nodes' tiles (the plan's dataflow, per pass).",
            node,
            registry=r,
        )
        self.link = Counter(
            "sedma_link_transfer_bytes",
            "Bytes moved from one site to another (src == dst: the site's LAN), per pass of "
            "the plan in force.",
            ("src_site", "dst_site"),
            registry=r,
        )

    # ------------------------------------------------------------------ listener
    def loop_started(self, start: LoopStart) -> None:
        self._spec = start.spec
        self._set_plan(start.plan)
        for n in start.spec.nodes:
            self.failed.labels(n.name).set(0)
        self.pending.set(0)

    def interval_started(self, interval: int) -> None:
        self._step_t0 = self._clock.now()

    def interval_done(self, report: IntervalReport) -> None:
        if self._step_t0 is not None:
            self.latency.observe(max(0.0, self._clock.now() - self._step_t0))
            self._step_t0 = None
        self.intervals.inc()
        passes = 0.0
        for row in report.rows:
            total = row.count * row.mean
            if row.entity == JOB and row.metric == "passes":
                passes = total
            elif row.metric == "busy_s":
                self.busy.labels(row.entity).inc(max(0.0, total))
                if report.pass_s:
                    self.util.labels(row.entity).set(min(1.0, total / report.pass_s))
            elif row.metric == "held_bytes":
                self.node_held.labels(row.entity).set(row.last)
        if passes and report.pass_s is not None:
            self.passes.inc(passes)
            self.pass_s.observe(report.pass_s)
            if report.pass_s > 0:
                self.throughput.set(1.0 / report.pass_s)
            # the plan that ran this interval's passes (a re-plan is taken in below)
            for (a, b), nbytes in self._traffic.items():
                self.link.labels(a, b).inc(nbytes * passes)
            for n, nbytes in self._sent.items():
                self.node_sent.labels(n).inc(nbytes * passes)
        for n, g in report.measured_gflops.items():
            self.rate.labels(n).set(g * 1e9)
        for n, free in report.free_bytes.items():
            self.node_free.labels(n).set(free)
        for n in report.failed:
            self.failed.labels(n).set(1)
        self.held.set(report.held_bytes)
        self._pending = report.outcomes_pending
        self.pending.set(self._pending)
        if report.plan is not self._plan:
            self._set_plan(report.plan)

    def decided(self, decision: Decision) -> None:
        verdict = "accepted" if decision.accepted else "rejected"
        self.decisions.labels(decision.layer, decision.kind, verdict).inc()
        if decision.accepted and decision.predicted_gain is not None:
            self.predicted.labels(decision.layer, decision.kind).set(decision.predicted_gain)

    def measured(self, outcome: Outcome) -> None:
        d = outcome.decision
        self.measured_gain.labels(d.layer, d.kind).set(outcome.gain)
        if d.kind == "replan":  # measured at the run's end, after its last interval
            self._pending = max(0, self._pending - 1)
            self.pending.set(self._pending)

    def _set_plan(self, plan: Plan) -> None:
        self._plan = plan
        counts: dict[str, int] = {}
        for t in plan.tiles:
            counts[t.node] = counts.get(t.node, 0) + 1
        names = [n.name for n in self._spec.nodes] if self._spec is not None else list(counts)
        for n in names:
            self.tiles.labels(n).set(counts.get(n, 0))
        per_node = node_traffic(plan)
        sent: dict[str, float] = {}
        for (a, _), nbytes in per_node.items():
            sent[a] = sent.get(a, 0.0) + nbytes
        self._sent = sent
        self._traffic = site_traffic(self._spec, per_node) if self._spec is not None else {}


TransportSource = Callable[[], Mapping[str, Mapping[str, int]]]
"""Returns each live transport node's counters (``Peer.stats()``), by node name."""


class TransportCollector(Collector):
    """The transport's counters, read from the live peers at each scrape."""

    # counter key -> (metric name, help); the rest of STAT_KEYS are drops and rejections
    _NAMES: ClassVar[dict[str, tuple[str, str]]] = {
        "sent": ("sedma_transport_sent_messages", "Messages the transport accepted to send."),
        "received": ("sedma_transport_received_messages", "Messages delivered to the node."),
        "bytes_sent": ("sedma_transport_sent_bytes", "Bytes of messages sent (encoded)."),
        "bytes_received": ("sedma_transport_received_bytes", "Bytes of messages received."),
    }

    def __init__(self, source: TransportSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        stats = self._source()
        families = {
            k: CounterMetricFamily(name, help_, labels=["node"])
            for k, (name, help_) in self._NAMES.items()
        }
        dropped = CounterMetricFamily(
            "sedma_transport_dropped_records",
            "Records dropped or rejected by the transport, by reason.",
            labels=["node", "reason"],
        )
        nodes = GaugeMetricFamily("sedma_transport_nodes", "Live transport nodes.")
        nodes.add_metric([], float(len(stats)))
        for node, counters in sorted(stats.items()):
            for k, v in counters.items():
                if k in families:
                    families[k].add_metric([node], float(v))
                elif k.startswith(("dropped_", "rejected_")) or k in ("duplicates", "record_gaps"):
                    dropped.add_metric([node, k], float(v))
        yield from families.values()
        yield dropped
        yield nodes


def parse_listen(option: str, value: str) -> tuple[str, int]:
    """``PORT`` (on 127.0.0.1) or ``HOST:PORT`` -> (host, port); 0 picks a free port."""
    host, _, port_s = value.rpartition(":")
    try:
        port = int(port_s)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535 or (":" in value and not host):
        raise SedmaError(
            f"{option}: got {value!r}; must be PORT or HOST:PORT with 0 <= PORT <= 65535"
        )
    return host or "127.0.0.1", port


class MetricsServer(ServerThread):
    """``registry`` served at ``http://host:port/metrics`` by a daemon thread until closed.

    Binding happens in the constructor: a port in use raises :class:`~sedma.errors.SedmaError`
    naming it, before any work starts.
    """

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0):
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as e:
            raise SedmaError(f"--metrics-port: cannot listen on {host}:{port} ({e})") from None
        super().__init__(server, thread, host, server.server_port, "/metrics")
