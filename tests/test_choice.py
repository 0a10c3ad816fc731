"""The plan choice: pass time against a memory-efficiency floor; the correction's arrays held."""

from __future__ import annotations

import dataclasses

import pytest

from sedma.compute.crossbar.correction import DEFAULT
from sedma.compute.partition.choice import Candidate, array_caps, choose
from sedma.compute.partition.context import PartitionContext, PartitionSettings
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import NodeFootprint, footprint, held_bytes
from sedma.errors import SpecError
from sedma.metrics import memory_efficiency
from sedma.spec_load import load_cluster
from sedma.workloads.registry import get_workload


def _cand(span: float, eff: float, label: str) -> Candidate:
    plan = plan_sedma(
        PartitionContext(
            nodes=views_from_spec(load_cluster("homogeneous")),
            workload=get_workload("resnet50", scale=0.05),
        )
    )
    return Candidate(plan, span, eff, label)


@pytest.mark.parametrize(
    ("cands", "floor", "picked", "says"),
    [
        ([(1.0, 0.99, "a"), (0.98, 0.90, "b")], 0.95, "a", "fastest with memory efficiency"),
        ([(1.0, 0.99, "a"), (0.98, 0.97, "b")], 0.95, "b", "fastest of 2"),
        ([(1.0, 0.90, "a"), (0.98, 0.80, "b")], 0.95, "b", "no candidate reaches"),
        ([(1.0, 0.99, "a"), (0.98, 0.90, "b")], 0.0, "b", "fastest of 2"),
        ([(1.0, 0.90, "a"), (1.0, 0.99, "b")], 0.95, "b", "fastest of 2"),
    ],
)
def test_choose_fastest_meeting_the_floor(
    cands: list[tuple[float, float, str]], floor: float, picked: str, says: str
) -> None:
    pick, why = choose([_cand(*c) for c in cands], floor)
    assert pick.label == picked
    assert says in why


def test_array_caps_keep_residual_within_the_floor() -> None:
    # 100 live bytes; 60 digital + 40 in arrays, half of them the correction's residual.
    fp = {
        "d": NodeFootprint(10, 10, 40, 0, 0),
        "r": NodeFootprint(0, 0, 0, 10, 40, correction_arrays=10),
    }
    # held 100, residual 20: at floor 0.9 the plan may hold 111.1 -> residual <= 31.1: fits.
    assert array_caps(fp, 100, 0.9, 2.0) is None
    # live 85: may hold 94.4 -> residual <= 94.4 - 80 = 14.4 of 20: 72% of the 10 arrays.
    assert array_caps(fp, 85, 0.9, 2.0) == {"r": 7}
    assert array_caps(fp, 70, 0.9, 2.0) is None  # slack <= 0: capping cannot help


def test_footprint_counts_the_residual_arrays_as_held() -> None:
    spec = load_cluster("small")
    wl = get_workload("resnet50", scale=0.25)
    errs = {"rram": 0.16}
    views = views_from_spec(spec, rel_errors=errs, corrected_errors={"rram": 0.014})
    fixed = PartitionSettings(correction=DEFAULT, min_memory_efficiency=0.0)
    plan = plan_sedma(PartitionContext(nodes=views, workload=wl, settings=fixed))
    fp = footprint(plan, {v.name: v.crossbar for v in views})["rram"]
    assert fp.arrays > 0 and fp.correction_arrays == fp.arrays  # DEFAULT doubles the arrays
    assert fp.array_bytes == 2 * fp.arrays * views[3].crossbar.weights_per_array * 4  # type: ignore[union-attr]


def test_corrected_rram_is_capped_to_meet_the_memory_floor() -> None:
    # small: the rram node would hold ~10% of the weights twice over; uncapped that is ~91%.
    spec = load_cluster("small")
    wl = get_workload("resnet50", scale=0.25)
    views = views_from_spec(spec, rel_errors={"rram": 0.16}, corrected_errors={"rram": 0.014})
    free = PartitionSettings(min_memory_efficiency=0.0)
    uncapped = plan_sedma(PartitionContext(nodes=views, workload=wl, settings=free))
    assert (
        memory_efficiency(
            uncapped.workload.live_bytes, held_bytes(uncapped, {v.name: v.crossbar for v in views})
        )
        < 0.95
    )
    plan = plan_sedma(PartitionContext(nodes=views, workload=wl))
    assert (
        memory_efficiency(
            plan.workload.live_bytes, held_bytes(plan, {v.name: v.crossbar for v in views})
        )
        >= 0.96
    )
    assert any("capped" in n for n in plan.notes) and any("chosen:" in n for n in plan.notes)
    assert "rram" in plan.nodes  # still uses the accelerator, within the floor


def test_memory_floor_is_validated() -> None:
    with pytest.raises(SpecError, match="min_memory_efficiency"):
        PartitionSettings(min_memory_efficiency=1.5)
    assert dataclasses.replace(PartitionSettings(), min_memory_efficiency=0.0)
