"""Soak and chaos on the wire (sedma.bench.soak): two minutes, as CI runs it.

Peers are killed and restarted, links degraded and paths cut, the relay killed, while small
messages flow between six peers on loopback; and nodes slow down and fail and tenants take
memory while jobs flow through the control loop (simulation backend). The senders must drain
(checked first: a drain that gave up leaves messages in flight, which is not loss, and the
failure says which channels held them and why); nothing accepted by a sender that lived may
be lost, no receiver may see a message twice or out of order, and the process's memory must
stay flat after the warm-up; no job may lose a pass's results.
"""

from __future__ import annotations

import pytest

from sedma.bench.soak import bench_soak
from sedma.errors import SedmaError


@pytest.mark.heavy
def test_two_minutes_of_chaos_lose_duplicate_and_reorder_nothing() -> None:
    r = bench_soak(2.0, seed=2)
    summary = {k: v for k, v in r.items() if k != "rss_mb"}
    print(summary)
    assert r["accepted"] > 1000, summary
    assert r["drained"], (r["drain_outcome"], r["undrained_channels"], summary)
    assert r["unacked_at_drain_timeout"] == 0, summary
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["out_of_order"] == 0, summary
    settled = r["delivered"] + r["gone_with_killed_sender"] + r["unacked_at_drain_timeout"]
    assert settled + r["lost"] == r["accepted"], summary  # each message in exactly one
    assert r["chaos"].get("peer_killed", 0) >= 3, summary  # the chaos really happened
    assert r["rss_growth_after_warmup_mb"] < 20.0, summary
    jobs = r["jobs"]  # jobs flowed meanwhile, under node and tenant chaos
    assert jobs["stopped"] and jobs["jobs"] >= 10, jobs
    assert jobs["results_lost"] == 0 and jobs["duplicate_results"] == 0, jobs
    assert jobs["passes_delivered"] == jobs["passes_asked"] > 0, jobs
    for kind in ("node_slowed", "node_failed", "tenant_took_memory"):
        assert jobs["chaos"].get(kind, 0) >= 3, jobs


@pytest.mark.parametrize(
    ("kwargs", "param"), [({"minutes": 0}, "minutes"), ({"peers": 2}, "peers")]
)
def test_soak_settings_are_checked(kwargs: dict[str, float], param: str) -> None:
    args = {"minutes": 1.0, **kwargs}
    minutes = args.pop("minutes")
    with pytest.raises(SedmaError, match=param):
        bench_soak(minutes, **args)  # type: ignore[arg-type]
