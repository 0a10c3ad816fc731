"""`sedma why ID`: every adaptation of a demo run explained, predicted against measured."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clusters import write_small_few_arrays
from sedma.cli.app import app
from sedma.memory.long_term import LongTermMemory
from sedma.memory.records import AdaptationRecord
from sedma.memory.schema import SCHEMA_VERSION
from sedma.observe.why import explain

runner = CliRunner()

PASSES = 10
DEMO = ["demo", "--scale", "0.25", "--passes", str(PASSES), "--static-passes", "2",
        "--comm-messages", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    d = tmp_path_factory.mktemp("why")
    mem, out = d / "m.db", d / "demo.json"
    # the small preset with 64 rram arrays: sedma's loop calibrates the chip at start, cheaply
    # here (the static split does not fit it and is reported failed; no test here reads it)
    cluster = write_small_few_arrays(d)
    r = runner.invoke(
        app, [*DEMO, "--cluster", str(cluster), "--memory", str(mem), "--json", str(out)]
    )
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    result["printed"] = r.output
    return mem, result


def test_why_explains_every_adaptation_of_a_demo_run_predicted_against_measured(
    demo_run: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    mem, result = demo_run
    decisions = result["decisions"]
    assert isinstance(decisions, list)
    accepted = [d for d in decisions if d["accepted"]]
    replans = [d for d in accepted if d["kind"] == "replan"]
    # the slowdown half-way is always answered by a re-plan
    assert replans, decisions
    for d in accepted:
        assert isinstance(d["id"], int)
        out = tmp_path / f"why{d['id']}.json"
        r = runner.invoke(app, ["why", str(d["id"]), "--memory", str(mem), "--json", str(out)])
        assert r.exit_code == 0, r.output
        w = json.loads(out.read_text())
        assert w["id"] == d["id"] and w["kind"] == d["kind"] and w["reason"] == d["reason"]
        assert w["has_evidence"] and w["policy"] and w["rule"]
        assert w["learned"], w  # at least the run's lessons
        text = r.output
        for part in ("policy:", "rule:", "what the loop saw", "predicted:", "measured:",
                     "what long-term memory learned:"):  # fmt: skip
            assert part in text, (part, text)
        if d["kind"] == "replan":
            assert w["policy"] == "compute.replan"
            nodes = w["saw"]["nodes"]
            drifted = [n for n, f in nodes.items() if f["drift"] is not None]
            assert drifted, nodes
            for n in drifted:  # the rule fired: measured left planned by the threshold
                f = nodes[n]
                ratio = f["measured_gflops"] / f["planned_gflops"] - 1
                assert abs(ratio) > w["saw"]["drift_threshold"]
                assert f["spec_gflops"] > 0
            assert w["predicted"]["gain"] == pytest.approx(d["predicted_gain"])
            m = w["measured"]
            if d["interval"] == PASSES:  # decided after the last pass: nothing to measure
                assert m is None and "the run ended before a pass followed it" in text
                continue
            assert m["metric"] == "pass_s" and m["passes"] >= 1
            assert m["gain"] == pytest.approx(1 - m["after_mean_s"] / m["before_s"])
            assert f"predicted {w['predicted']['gain']:+.1%}" in text
            assert "against measured" in text
            # what memory learned: the next run's prior of a drifted node
            assert any("prior rate" in note for note in w["learned"]), w["learned"]
        elif d["kind"] == "calibrate":
            assert w["measured"]["figures"]["node"] == "rram"


def test_why_ids_are_printed_beside_each_adaptation_of_the_demo(
    demo_run: tuple[Path, dict[str, Any]],
) -> None:
    mem, result = demo_run
    with LongTermMemory(mem, read_only=True) as ltm:
        for d in result["decisions"]:
            rec = ltm.adaptation(d["id"])
            assert rec is not None and rec.kind == d["kind"] and rec.reason == d["reason"]
            if d["accepted"]:  # the demo's list of adaptations names each by its ID
                assert f"pass {d['interval']} #{d['id']}: " in result["printed"]


def test_why_of_an_unknown_id_is_one_clear_error(demo_run: tuple[Path, object]) -> None:
    mem, _ = demo_run
    r = runner.invoke(app, ["why", "99999", "--memory", str(mem)])
    assert r.exit_code == 2
    assert "ID: got 99999; no decision with that ID" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["why", "0", "--memory", str(mem)])
    assert r.exit_code == 2 and "must be a decision ID >= 1" in r.output


def test_why_never_creates_a_store(tmp_path: Path) -> None:
    where = tmp_path / "typo" / "m.db"
    r = runner.invoke(app, ["why", "1", "--memory", str(where)])
    assert r.exit_code == 2 and "no long-term memory at" in r.output
    assert not where.parent.exists()


def _v1_store(path: Path) -> int:
    """A store as sedma 0.1.0 wrote it: schema v1, no evidence columns, one adaptation."""
    with LongTermMemory(path) as ltm:
        run = ltm.start_run("k", "small", "w", {})
        aid = ltm.record_adaptation(
            AdaptationRecord(
                None,
                run,
                1.0,
                "k",
                "compute",
                "replan",
                {"tiles": 3},
                "gpu rate -50% vs plan",
                True,
                0.2,
            )
        )
        ltm.record_outcome(aid, 0.15, 2.0)
    with sqlite3.connect(path) as raw:
        for col in ("policy", "evidence", "outcome"):
            raw.execute(f"ALTER TABLE adaptations DROP COLUMN {col}")
        raw.execute("UPDATE meta SET schema_version = 1")
    return aid


def test_a_v1_store_is_refused_read_only_then_upgraded_and_old_decisions_say_so(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    aid = _v1_store(path)
    r = runner.invoke(app, ["why", str(aid), "--memory", str(path)])
    assert r.exit_code == 2
    assert f"schema_version 1, older than {SCHEMA_VERSION}" in r.output
    with LongTermMemory(path) as ltm:  # any writer upgrades it in place
        w = explain(ltm, aid)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT schema_version FROM meta").fetchone()[0] == SCHEMA_VERSION
    assert not w["has_evidence"] and w["policy"] is None
    assert w["predicted"] == {"gain": 0.2} and w["measured"]["gain"] == 0.15
    r = runner.invoke(app, ["why", str(aid), "--memory", str(path)])
    assert r.exit_code == 0, r.output
    assert "stored before this store kept evidence" in r.output
