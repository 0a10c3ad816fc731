"""The dashboard: its JSON, and the page in a real headless chromium during a demo run."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clusters import small_few_arrays
from sedma.cli.app import app
from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.partition.views import views_from_spec
from sedma.control.listen import IntervalReport, LoopStart, Outcome
from sedma.control.loop_types import Decision
from sedma.memory.long_term import LongTermMemory
from sedma.memory.series import IntervalAggregate
from sedma.observe.dashboard import DashboardServer
from sedma.observe.state import LiveState
from sedma.observe.store_view import StoreView
from sedma.spec_load import load_cluster
from sedma.workloads.registry import get_workload

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_live_state_serves_the_cluster_plan_points_and_decisions_as_json() -> None:
    spec = load_cluster("small")
    wl = get_workload("resnet50", scale=0.25)
    plan = plan_sedma(PartitionContext(nodes=views_from_spec(spec), workload=wl))
    live = LiveState()
    live.loop_started(LoopStart(spec, wl, plan, 0.0, 7))
    d = Decision(1.0, 1, "compute", "replan", True, "gpu rate -50% vs plan", 0.2, {}, 12, "p")
    live.decided(d)
    rows = (
        IntervalAggregate("gpu", "busy_s", 1, 0.002, 0.002, 0.002, 0.002, 0.0, 1.0),
        IntervalAggregate("gpu", "held_bytes", 1, 5e6, 5e6, 5e6, 5e6, 0.0, 1.0),
    )
    live.interval_done(
        IntervalReport(
            1,
            1.0,
            0.004,
            rows,
            plan,
            {"gpu": 400.0},
            {"gpu": 10**9},
            5_000_000,
            frozenset(),
            (d,),
            1,
        )
    )
    live.measured(Outcome(d, 0.15, {"metric": "pass_s"}))
    with DashboardServer(live) as server:
        status, page = get(server.url)
        assert status == 200 and b"<svg" in page
        # nothing fetched from elsewhere (CI has no internet): no external src, href or import
        assert not re.search(rb"(src|href)=[\"']?(https?:)?//|import\s|fetch\([\"']http", page)
        status, body = get(server.url + "api/state")
        assert status == 200
        state = json.loads(body)
        assert get(server.url + "nope")[0] == 404
    assert state["run"] == {"state": "running", "run_id": 7, "t0": 0.0}
    assert {n["name"] for n in state["cluster"]["nodes"]} == {n.name for n in spec.nodes}
    assert {s["name"] for s in state["cluster"]["sites"]} == {"dc", "edge"}
    assert sum(r["tiles"] for r in state["plan"]["nodes"].values()) == len(plan.tiles)
    assert sum(r["flop_share"] for r in state["plan"]["nodes"].values()) == pytest.approx(1.0)
    (p,) = state["points"]
    assert p["throughput_ops_s"] == pytest.approx(250.0)
    assert p["nodes"]["gpu"]["utilization"] == pytest.approx(0.5)
    assert p["nodes"]["gpu"]["held_bytes"] == 5e6
    assert p["links"]["dc->dc"] > 0  # the plan's bytes on the data centre's LAN
    (dec,) = state["decisions"]
    assert dec["id"] == 12 and dec["predicted_gain"] == 0.2 and dec["measured_gain"] == 0.15


def test_dashboard_over_a_missing_or_empty_store_is_one_clear_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["dashboard", "--memory", str(tmp_path / "typo.db")])
    assert r.exit_code == 2 and "no long-term memory at" in r.output
    assert not (tmp_path / "typo.db").exists()
    LongTermMemory(tmp_path / "empty.db").close()
    r = runner.invoke(app, ["dashboard", "--memory", str(tmp_path / "empty.db")])
    assert r.exit_code == 2 and "holds no runs yet" in r.output
    r = runner.invoke(app, ["dashboard", "--memory", str(tmp_path / "empty.db"), "--port", "x"])
    assert r.exit_code == 2 and "--port: got 'x'" in r.output


def _browser() -> Any:
    """Headless chromium through chromium-driver; skips in one line where neither is
    installed and we cannot install them (not root); as root, `make sysdeps` installs them."""
    if not (CHROMIUM and DRIVER):
        if os.geteuid() != 0:
            pytest.skip("chromium and chromium-driver are not installed (make sysdeps as root)")
        pytest.fail("chromium or chromium-driver missing: run `make sysdeps` (root installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,2000"):  # fmt: skip
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def _console_errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


@pytest.mark.heavy
def test_the_page_shows_nodes_and_adaptations_live_in_headless_chromium(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from sedma.bench.compare import CompareConfig, run_comparison

    live = LiveState()
    mem = tmp_path / "m.db"
    # The page shows sedma's loop; on the 64-array chip its start-up calibration is cheap (the
    # static split, which pads tiles to whole arrays, does not fit it and is reported so).
    # 24 passes keep the run going about 4 s after the page first shows an adaptation.
    cfg = CompareConfig(cluster=small_few_arrays(), scale=0.25, passes=24, static_passes=2,
                        memory=mem, comm_messages=0)  # fmt: skip
    result: dict[str, Any] = {}
    driver = _browser()
    try:
        with DashboardServer(live) as server:
            worker = threading.Thread(
                target=lambda: result.update(run_comparison(cfg, listeners=[live]))
            )
            worker.start()
            driver.get(server.url)
            WebDriverWait(driver, 120, 0.2).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, ".node[data-node='gpu']")
            )
            WebDriverWait(driver, 120, 0.2).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "tr.adaptation.accepted")
            )
            seen_while_running = worker.is_alive()
            worker.join()
            live.finished()
            WebDriverWait(driver, 10, 0.2).until(
                lambda d: "finished" in d.find_element(By.ID, "title").text
            )
            nodes = {
                e.get_attribute("data-node") for e in driver.find_elements(By.CSS_SELECTOR, ".node")
            }
            rows = driver.find_elements(By.CSS_SELECTOR, "tr.adaptation")
            ids = {e.get_attribute("data-id") for e in rows}
            marks = driver.find_elements(By.CSS_SELECTOR, "#chart-tp line.mark")
            links = driver.find_elements(By.CSS_SELECTOR, "tr.link")
            shot = os.environ.get("SEDMA_DASHBOARD_SCREENSHOT")
            if shot:
                driver.save_screenshot(shot)
            errors = _console_errors(driver)
            driver.get("about:blank")  # stop polling before this server closes
        # sedma dashboard --memory: the same run read back from the store
        with DashboardServer(StoreView(mem)) as server:
            driver.get(server.url)
            WebDriverWait(driver, 30, 0.2).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "tr.adaptation.accepted")
            )
            stored_ids = {
                e.get_attribute("data-id")
                for e in driver.find_elements(By.CSS_SELECTOR, "tr.adaptation")
            }
            stored_nodes = {
                e.get_attribute("data-node") for e in driver.find_elements(By.CSS_SELECTOR, ".node")
            }
            errors += _console_errors(driver)
    finally:
        driver.quit()
    assert seen_while_running, "the run ended before the page showed an adaptation"
    assert errors == []
    assert nodes == {"gpu", "cpu-0", "cpu-1", "rram", "edge"} == stored_nodes
    want = {str(d["id"]) for d in result["decisions"]}
    assert ids == want == stored_ids
    accepted = [d for d in result["decisions"] if d["accepted"]]
    assert len(marks) == len(accepted)  # each adaptation marked on the chart over time
    assert links  # per-link traffic
