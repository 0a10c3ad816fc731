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

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from sedma.bench.soak import _Soak, bench_soak
from sedma.cli.bench_comm import _print_soak
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


# -- the drain and the accounting, on three peers whose own senders stay idle


async def _eventually(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _quiet_soak(scenario: Callable[[_Soak], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        soak = _Soak(3, seed=0, interval_s=1e9)  # the senders never wake: the test sends
        await soak.start_relay()
        for name in soak.names:
            await soak.start_peer(name)
        try:
            await scenario(soak)
        finally:
            for tasks in soak.tasks.values():
                for task in tasks:
                    task.cancel()
            for node in list(soak.nodes.values()):
                await node.close()
            assert soak.relay is not None
            await soak.relay.close()

    asyncio.run(asyncio.wait_for(main(), 60.0))


def _received(soak: _Soak, dst: str) -> int:
    return sum(len(list(r.numbers())) for (d, *_), r in soak.received.items() if d == dst)


def test_a_drain_that_gives_up_reports_a_timeout_and_what_is_held_is_not_lost() -> None:
    async def scenario(soak: _Soak) -> None:
        p0, seqs = soak.nodes["p0"], Counter[str]()
        for _ in range(5):
            await soak.send_one(p0, 1, "p1", seqs)
        ch = p0.channel("p1")
        assert ch is not None
        await _eventually(lambda: _received(soak, "p1") == 5 and ch.unacked == 0)
        await soak.kill_peer("p1")  # and never restarted: p0 redials in vain
        for _ in range(3):
            await soak.send_one(p0, 1, "p1", seqs)
        drained, outcome = await soak.drain(stall_s=1.0, cap_s=10.0)
        assert not drained and outcome.startswith("no progress for 1 s"), outcome
        r = soak.account()
        assert (r["accepted"], r["delivered"], r["unacked_at_drain_timeout"]) == (8, 5, 3), r
        assert r["lost"] == 0, r
        assert soak.undrained()["p0->p1"]["unacked"] == 3

    _quiet_soak(scenario)


def test_the_drain_reconnects_a_channel_left_waiting_for_a_restarted_remote() -> None:
    # p1 dialled p0, so p0's channel to p1 has no plan: once p1 is killed it waits for p1
    # to come back, and p1's successor, with nothing to send, never would.
    async def scenario(soak: _Soak) -> None:
        p0, p1 = soak.nodes["p0"], soak.nodes["p1"]
        await soak.send_one(p1, 1, "p0", Counter())
        seqs = Counter[str]()
        for _ in range(2):
            await soak.send_one(p0, 1, "p1", seqs)  # on the channel p1 made
        await _eventually(lambda: _received(soak, "p1") == 2)
        await soak.kill_peer("p1")
        ch = p0.channel("p1")
        assert ch is not None
        await _eventually(lambda: ch.path_kind is None)
        for _ in range(2):
            await soak.send_one(p0, 1, "p1", seqs)
        await soak.start_peer("p1")
        drained, outcome = await soak.drain(stall_s=5.0, cap_s=20.0)
        assert drained and outcome == "drained", (outcome, soak.undrained())
        assert soak.drain_reconnects == 1
        r = soak.account()
        assert (r["accepted"], r["delivered"], r["lost"]) == (5, 5, 0), r

    _quiet_soak(scenario)


# -- the printed result


def _result(drained: bool, undrained: dict[str, dict[str, Any]]) -> dict[str, Any]:
    outcome = "drained" if drained else "no progress for 20 s (3 unacknowledged)"
    return {
        "accepted": 8, "delivered": 5, "unacked_at_drain_timeout": 0 if drained else 3,
        "lost": 0, "drained": drained, "drain_outcome": outcome,
        "undrained_channels": undrained, "drain_reconnects": 0, "chaos": {"peer_killed": 1},
        "jobs": {"passes": 4, "chaos": {"node_failed": 1}}, "rss_mb": [(0.0, 50.0)],
    }  # fmt: skip


def test_the_soak_prints_the_channels_held_when_the_drain_gave_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    held = {
        "p0->p1": {"unacked": 3, "paths": 0, "dial_plan": True, "redialling": True,
                   "receiver_alive": False, "last_event": "redial_failed: p1: unreachable"},
        "p2->p0": {"unacked": 1, "paths": 1, "dial_plan": False, "redialling": False,
                   "receiver_alive": True, "last_event": None},
    }  # fmt: skip
    _print_soak(_result(False, held))
    text = capsys.readouterr().out
    assert "channels holding messages when the drain gave up (2)" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if "->" in line}
    assert rows["p0->p1"][1:7] == ["3", "0", "yes", "yes", "dead", "redial_failed:"], text
    assert rows["p2->p0"][1:7] == ["1", "1", "no", "no", "alive", "-"], text
    assert "job chaos injected" in text  # the tables after it still come


def test_the_soak_prints_no_held_channels_when_it_drained(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _print_soak(_result(True, {}))
    text = capsys.readouterr().out
    assert "drain gave up" not in text and "->" not in text
    assert "job chaos injected" in text
