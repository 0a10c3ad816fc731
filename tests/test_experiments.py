"""The experiment scripts docs/results.md cites still run on today's package."""

from __future__ import annotations

import runpy
from pathlib import Path

from sedma.compute.partition.layers import model_layers
from sedma.workloads.registry import get_workload

SCRIPT = Path(__file__).parents[1] / "docs" / "experiments" / "edge_swarm_pipelines.py"


def test_finer_units_cut_each_decoder_layer_at_its_attention_and_cover_every_product() -> None:
    finer_units = runpy.run_path(str(SCRIPT))["finer_units"]
    wl = get_workload("tinyllama-1.1b", context=64)
    units = finer_units(wl)
    assert [i for a, b in units for i in range(a, b)] == list(range(len(wl.ops)))
    decoder = [lay for lay in model_layers(wl) if lay[1] - lay[0] > 1]
    assert len(units) == len(model_layers(wl)) + 2 * len(decoder)
    for a, b in units:  # each unit is all static weights or all cache
        assert len({wl.ops[i].weight_static for i in range(a, b)}) == 1
