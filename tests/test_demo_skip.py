"""``sedma demo`` where the model is too big to compute on this host: the headline and the
message-latency run still come out, the real compute run says why it was skipped."""

from __future__ import annotations

import pytest

import sedma.bench.demo as demo
from sedma.bench.compare import CompareConfig
from sedma.bench.host_memory import LOCAL_RUN_FACTOR, float32_bytes, local_run_refusal
from sedma.workloads.registry import get_workload


def test_a_model_too_big_here_still_gets_its_message_latencies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo, "host_available_bytes", lambda: 0)  # as llama-7b's is here
    # any model is too big now: the one whose costed headline simulates fastest (ssd300, 4 s;
    # bert-base took 8)
    cfg = CompareConfig(cluster="small", workload="ssd300", scale=0.05, comm_messages=60)
    r = demo.run_demo(cfg)
    assert "real run would hold about" in r["local"]["skipped"]
    assert "--scale" in r["local"]["skipped"]
    books = r["communication"]["books"]
    assert set(books) == {"sedma", "static", "ray"}
    for name in ("sedma", "static", "ray"):
        assert r["systems"][name]["latency_ms"] == books[name]["latency_ms"]
        assert books[name]["sent"] == 60
    assert "latency_ms" not in r["systems"]["exo"]  # exo and Petals have no peer chooser


def test_a_model_whose_weights_do_not_fit_is_refused_for_its_weights_alone() -> None:
    gib = 2**30
    llama = get_workload("llama-7b")
    reason = local_run_refusal(llama, 22 * gib)
    assert reason is not None and reason.weights_alone
    assert f"{float32_bytes(llama) * LOCAL_RUN_FACTOR / gib:.1f} GiB" in reason.reason
    assert local_run_refusal(get_workload("tinyllama-1.1b"), 22 * gib) is None


def test_a_model_whose_activations_do_not_fit_is_refused_for_them() -> None:
    bert = get_workload("bert-base")
    weights = sum(4 * op.k * op.n for op in bert.ops)
    # the weights fit, and half the activations
    room = int(LOCAL_RUN_FACTOR * (weights + float32_bytes(bert)) / 2)
    reason = local_run_refusal(bert, room)
    assert reason is not None and not reason.weights_alone
    assert local_run_refusal(get_workload("bert-base", scale=0.25), room) is None
