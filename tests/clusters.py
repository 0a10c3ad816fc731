"""Shared test clusters: the ``small`` preset with a smaller rram chip.

Covers :func:`small_few_arrays` (the spec) and :func:`write_small_few_arrays` (the same spec as
a TOML file, for commands that take ``--cluster FILE``). Both are the packaged ``small`` preset
(its name included) except for the rram node's array count.

Why: a control loop on the local backend measures an uncalibrated rram device when it starts,
every array of it, and on the preset's 1024 arrays that one calibration costs 10 to 20 CPU
seconds. Tests whose workload needs a few arrays, and which check nothing that depends on how
many the chip has, run on this chip instead. Tests of what the array count decides (a plan
against the chip's capacity, the static split that pads every tile to whole arrays) keep the
preset (``sedma.spec_load.load_cluster("small")``).
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from sedma.spec import ClusterSpec
from sedma.spec_load import parse_cluster

__all__ = ["FEW_ARRAYS", "small_few_arrays", "write_small_few_arrays"]

FEW_ARRAYS = 64  # 128 x 128 arrays, as the preset's: room for a few small layers, corrected

_PRESET_ARRAYS = "arrays = 1024\n"


def _toml(arrays: int) -> str:
    text = resources.files("sedma.presets").joinpath("small.toml").read_text("utf-8")
    assert text.count(_PRESET_ARRAYS) == 1, "the small preset's rram chip changed"
    return text.replace(_PRESET_ARRAYS, f"arrays = {arrays}\n")


def small_few_arrays(arrays: int = FEW_ARRAYS) -> ClusterSpec:
    """The ``small`` preset with ``arrays`` crossbar arrays on its rram node."""
    return parse_cluster(tomllib.loads(_toml(arrays)), "small")


def write_small_few_arrays(directory: Path, arrays: int = FEW_ARRAYS) -> Path:
    """:func:`small_few_arrays` written as ``directory / "small.toml"``; returns the path."""
    path = directory / "small.toml"
    path.write_text(_toml(arrays), encoding="utf-8")
    return path
