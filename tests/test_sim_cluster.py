"""Seeded synthetic clusters are valid specs, reproducible, and heterogeneous."""

from __future__ import annotations

import pytest

from sedma.errors import SedmaError
from sedma.sim.cluster import random_cluster


def test_same_seed_same_cluster_and_different_seed_differs() -> None:
    a, b, c = random_cluster(40, seed=7), random_cluster(40, seed=7), random_cluster(40, seed=8)
    assert a == b
    assert a != c


def test_random_cluster_is_heterogeneous_and_well_formed() -> None:
    spec = random_cluster(200, seed=1)
    assert len(spec.nodes) == 200
    rates = [n.device.matmul_gflops for n in spec.nodes]
    assert max(rates) / min(rates) >= 10
    assert {n.kind for n in spec.nodes} == {"cpu", "gpu", "rram"}
    assert all(n.device.crossbar is not None for n in spec.nodes if n.kind == "rram")
    assert all(0.8 <= n.emulated_rate_factor <= 1.0 for n in spec.nodes)
    assert all(n.nat == "none" for n in spec.nodes if n.site == "dc")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n_nodes": 0}, "n_nodes"),
        ({"n_nodes": 5, "sites": 0}, "sites"),
        ({"n_nodes": 5, "rate_jitter": 1.5}, "rate_jitter"),
    ],
)
def test_bad_arguments_name_themselves(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(SedmaError, match=fragment):
        random_cluster(**kwargs)  # type: ignore[arg-type]
