"""Reading a cluster spec: the TOML format of ARCHITECTURE.md, validated, and the presets.

Covers: :func:`parse_cluster` (a parsed TOML mapping checked key by key into a
:class:`~sedma.spec.ClusterSpec`, ``count = N`` expanded into named nodes),
:func:`load_cluster` (a preset's name or a file's path), :func:`preset_names`, and the size
limits (:data:`MAX_NODES`, :data:`MAX_SITES`, :data:`MAX_LINKS`, :data:`MAX_NAME_CHARS`,
:data:`MAX_SPEC_BYTES`, the crossbar's geometry). Does not cover: the spec types themselves
(see :mod:`sedma.spec`).

Validation happens here, once, at the boundary: everything downstream may trust a
:class:`~sedma.spec.ClusterSpec`. Each invalid spec raises one
:class:`~sedma.errors.SpecError` naming the key, the value received and what is allowed.
Sizes are checked before anything of that size is built, so a typo such as
``count = 100000000`` is an error at once, never a hang.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast, get_args

from sedma.errors import SpecError
from sedma.spec import (
    CROSSBAR_KEYS,
    ClusterSpec,
    CrossbarSpec,
    DeviceProfile,
    LinkSpec,
    NatType,
    NodeKind,
    NodeSpec,
    SiteSpec,
)

__all__ = [
    "MAX_LINKS",
    "MAX_NAME_CHARS",
    "MAX_NODES",
    "MAX_SITES",
    "MAX_SPEC_BYTES",
    "load_cluster",
    "parse_cluster",
    "preset_names",
]

# Size limits. Nodes: the planner and the simulator are built and tested for 10 to 10,000
# nodes, one entry per node (sedma plan takes ~10 s at 10,000; identical nodes are not
# grouped), so a larger cluster is refused with that reason rather than left to run for hours.
MAX_NODES = 10_000
MAX_SITES = 1_000
MAX_LINKS = 10_000
MAX_NAME_CHARS = 128
MAX_SPEC_BYTES = 16 << 20  # a 10,000-node spec written node by node is ~3 MB
MAX_ARRAY_DIM = 8192  # rows or cols of one crossbar array (real ones: 64 to 1024)
MAX_ARRAYS = 1 << 20  # arrays of one rram node
_T = TypeVar("_T")
# Ceilings far above any real machine or link, low enough that every figure derived from
# them (bytes, seconds, products of rates) stays a finite float and a valid int.
_MOST = {"rtt_ms": 1e6, "bandwidth_mbps": 1e9, "matmul_gflops": 1e9, "memory_gib": 1e7,
         "mem_bandwidth_gbs": 1e7}  # fmt: skip


# --------------------------------------------------------------------------- validation


def _fail(key: str, value: object, allowed: str) -> SpecError:
    return SpecError(f"spec key {key!r}: got {value!r}; {allowed}")


def _check_keys(
    table: Mapping[str, Any], where: str, required: set[str], optional: set[str]
) -> None:
    for k in table:
        if k not in required and k not in optional:
            allowed = ", ".join(sorted(required | optional))
            raise _fail(f"{where}.{k}", table[k], f"unknown key; allowed keys are {allowed}")
    for k in sorted(required):
        if k not in table:
            raise SpecError(f"spec key {where + '.' + k!r} is missing; it is required")


def _read(
    table: Mapping[str, Any],
    key: str,
    where: str,
    default: _T | None,
    check: Callable[[Any, str], _T],
) -> _T:
    """``table[key]`` passed through ``check`` (with the key's full name, for its error), or
    ``default`` when the table omits the key (only optional keys are read with one)."""
    if key not in table:
        assert default is not None, key
        return default
    return check(table[key], f"{where}.{key}")


def _number(
    table: Mapping[str, Any],
    key: str,
    where: str,
    *,
    default: float | None = None,
    lo: float | None = None,
    lo_open: bool = True,
    hi: float | None = None,
    hi_open: bool = True,
) -> float:
    def check(v: Any, full: str) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise _fail(full, v, "must be a finite number")
        rng = []
        if lo is not None:
            rng.append(f"{'>' if lo_open else '>='} {lo:g}")
            if v < lo or (lo_open and v == lo):
                raise _fail(full, v, "must be " + " and ".join(rng))
        if hi is not None:
            rng.append(f"{'<' if hi_open else '<='} {hi:g}")
            if v > hi or (hi_open and v == hi):
                raise _fail(full, v, "must be " + " and ".join(rng))
        return float(v)

    return _read(table, key, where, default, check)


def _integer(
    table: Mapping[str, Any],
    key: str,
    where: str,
    *,
    default: int | None = None,
    lo: int = 1,
    hi: int | None = None,
) -> int:
    def check(v: Any, full: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _fail(full, v, "must be an integer")
        if v < lo or (hi is not None and v > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise _fail(full, v, f"must be an integer {bound}")
        return v

    return _read(table, key, where, default, check)


def _string(
    table: Mapping[str, Any],
    key: str,
    where: str,
    choices: tuple[str, ...] = (),
    default: str | None = None,
) -> str:
    def check(v: Any, full: str) -> str:
        if not isinstance(v, str) or not v.strip():
            raise _fail(full, v, "must be a non-empty string")
        if len(v) > MAX_NAME_CHARS:
            raise _fail(full, v[:40] + "...", f"must be at most {MAX_NAME_CHARS} characters")
        if choices and v not in choices:
            raise _fail(full, v, f"must be one of {', '.join(choices)}")
        return v

    return _read(table, key, where, default, check)


def _tables(data: Mapping[str, Any], key: str, most: int) -> list[Mapping[str, Any]]:
    v = data.get(key, [])
    if not isinstance(v, list) or not all(isinstance(t, dict) for t in v):
        raise _fail(key, f"<{type(v).__name__}>", f"must be an array of tables ([[{key}]])")
    if len(v) > most:
        raise _fail(key, f"<{len(v)} tables>", f"a cluster may have at most {most} [[{key}]]")
    return cast(list[Mapping[str, Any]], v)


def _crossbar(t: Any, where: str) -> CrossbarSpec:
    if not isinstance(t, dict):
        raise _fail(where, t, "must be a table ([node.crossbar])")
    _check_keys(t, where, set(CROSSBAR_KEYS), set())
    cols = _integer(t, "cols", where, lo=2)
    if cols % 2:
        raise _fail(f"{where}.cols", cols, "must be even (weights are differential pairs)")
    frac = {"lo": 0.0, "lo_open": False, "hi": 1.0}
    if cols > MAX_ARRAY_DIM:
        raise _fail(f"{where}.cols", cols, f"must be an integer between 2 and {MAX_ARRAY_DIM}")
    xb = CrossbarSpec(
        rows=_integer(t, "rows", where, hi=MAX_ARRAY_DIM),
        cols=cols,
        arrays=_integer(t, "arrays", where, hi=MAX_ARRAYS),
        bits_per_cell=_integer(t, "bits_per_cell", where, hi=16),
        program_noise=_number(t, "program_noise", where, **frac),  # type: ignore[arg-type]
        read_noise=_number(t, "read_noise", where, **frac),  # type: ignore[arg-type]
        stuck_on_rate=_number(t, "stuck_on_rate", where, **frac),  # type: ignore[arg-type]
        stuck_off_rate=_number(t, "stuck_off_rate", where, **frac),  # type: ignore[arg-type]
        drift_per_decade=_number(t, "drift_per_decade", where, **frac),  # type: ignore[arg-type]
        dac_bits=_integer(t, "dac_bits", where, hi=32),
        adc_bits=_integer(t, "adc_bits", where, hi=32),
        ir_drop=_number(t, "ir_drop", where, **frac),  # type: ignore[arg-type]
    )
    if xb.stuck_on_rate + xb.stuck_off_rate >= 1.0:
        raise _fail(
            f"{where}.stuck_on_rate", xb.stuck_on_rate, "stuck_on_rate + stuck_off_rate must be < 1"
        )
    return xb


_NODE_REQUIRED = {"name", "kind", "site", "matmul_gflops", "memory_gib", "mem_bandwidth_gbs"}
_NODE_OPTIONAL = {"count", "nat", "crossbar", "emulated_rate_factor"}


def parse_cluster(data: Mapping[str, Any], name: str = "custom") -> ClusterSpec:
    """Validate a parsed TOML document and build a :class:`ClusterSpec`."""
    if not isinstance(data, Mapping):
        raise _fail("<document>", data, "must be a TOML table")
    _check_keys(data, "<spec>", set(), {"site", "link", "node", "name", "description"})
    if "name" in data:
        name = _string(data, "name", "<spec>")

    sites: list[SiteSpec] = []
    for i, t in enumerate(_tables(data, "site", MAX_SITES)):
        where = f"site[{i}]"
        _check_keys(t, where, {"name"}, {"lan_rtt_ms", "lan_bandwidth_mbps"})
        sites.append(
            SiteSpec(
                name=_string(t, "name", where),
                lan_rtt_ms=_number(
                    t,
                    "lan_rtt_ms",
                    where,
                    default=0.2,
                    lo=0.0,
                    lo_open=False,
                    hi=_MOST["rtt_ms"],
                    hi_open=False,
                ),
                lan_bandwidth_mbps=_number(
                    t,
                    "lan_bandwidth_mbps",
                    where,
                    default=10000.0,
                    lo=0.0,
                    hi=_MOST["bandwidth_mbps"],
                    hi_open=False,
                ),
            )
        )
    if not sites:
        raise SpecError("spec key 'site' is missing; a cluster needs at least one [[site]]")
    site_names = [s.name for s in sites]
    for s in site_names:
        if site_names.count(s) > 1:
            raise _fail("site.name", s, "must be unique; this site name appears twice")

    links: list[LinkSpec] = []
    for i, t in enumerate(_tables(data, "link", MAX_LINKS)):
        where = f"link[{i}]"
        _check_keys(t, where, {"a", "b", "rtt_ms", "bandwidth_mbps"}, {"loss"})
        a = _string(t, "a", where, tuple(site_names))
        b = _string(t, "b", where, tuple(site_names))
        if a == b:
            raise _fail(f"{where}.b", b, "must differ from a (a link joins two sites)")
        links.append(
            LinkSpec(
                a=a,
                b=b,
                rtt_ms=_number(
                    t, "rtt_ms", where, lo=0.0, lo_open=False, hi=_MOST["rtt_ms"], hi_open=False
                ),
                bandwidth_mbps=_number(
                    t, "bandwidth_mbps", where, lo=0.0, hi=_MOST["bandwidth_mbps"], hi_open=False
                ),
                loss=_number(t, "loss", where, default=0.0, lo=0.0, lo_open=False, hi=1.0),
            )
        )

    nodes: list[NodeSpec] = []
    for i, t in enumerate(_tables(data, "node", MAX_NODES)):
        where = f"node[{i}]"
        _check_keys(t, where, _NODE_REQUIRED, _NODE_OPTIONAL)
        base = _string(t, "name", where)
        kind = cast(NodeKind, _string(t, "kind", where, get_args(NodeKind)))
        if kind == "rram" and "crossbar" not in t:
            raise SpecError(
                f"spec key {where + '.crossbar'!r} is missing; it is required for kind = 'rram'"
            )
        if kind != "rram" and "crossbar" in t:
            raise _fail(
                f"{where}.crossbar", "<table>", f"is only allowed for kind = 'rram', not {kind!r}"
            )
        profile = DeviceProfile(
            kind=kind,
            matmul_gflops=_number(
                t, "matmul_gflops", where, lo=0.0, hi=_MOST["matmul_gflops"], hi_open=False
            ),
            memory_gib=_number(
                t, "memory_gib", where, lo=0.0, hi=_MOST["memory_gib"], hi_open=False
            ),
            mem_bandwidth_gbs=_number(
                t, "mem_bandwidth_gbs", where, lo=0.0, hi=_MOST["mem_bandwidth_gbs"], hi_open=False
            ),
            crossbar=_crossbar(t["crossbar"], f"{where}.crossbar") if "crossbar" in t else None,
        )
        site = _string(t, "site", where, tuple(site_names))
        nat = cast(NatType, _string(t, "nat", where, get_args(NatType), default="none"))
        factor = _number(
            t, "emulated_rate_factor", where, default=1.0, lo=0.0, hi=1.0, hi_open=False
        )
        count = _integer(t, "count", where, default=0, lo=1) if "count" in t else None
        if len(nodes) + (count or 1) > MAX_NODES:
            raise _fail(
                f"{where}.count" if count else where,
                count or base,
                f"a cluster may hold at most {MAX_NODES} nodes in all ({len(nodes)} before "
                "this table); the planner and simulator handle each node one by one and are "
                "built for 10 to 10,000 nodes: split the cluster, or describe each group of "
                "identical machines as fewer, larger nodes",
            )
        names = [base] if count is None else [f"{base}-{j}" for j in range(count)]
        for n in names:
            nodes.append(
                NodeSpec(name=n, site=site, nat=nat, device=profile, emulated_rate_factor=factor)
            )
    if not nodes:
        raise SpecError("spec key 'node' is missing; a cluster needs at least one [[node]]")
    by_name: dict[str, NodeSpec] = {}
    for node in nodes:
        if node.name in by_name:
            raise _fail("node.name", node.name, "must be unique (after expanding count)")
        by_name[node.name] = node
    return ClusterSpec(
        name=name, sites=tuple(sites), links=tuple(links), nodes=tuple(nodes), _by_name=by_name
    )


def preset_names() -> tuple[str, ...]:
    """Names of the packaged cluster presets (``paper``, ``small``, ...)."""
    files = resources.files("sedma.presets").iterdir()
    return tuple(
        sorted(
            f.name[: -len(".toml")]
            for f in files
            if f.name.endswith(".toml") and not f.name.startswith("workload")
        )
    )


def load_cluster(source: str | Path) -> ClusterSpec:
    """Load a cluster from a preset name (``"paper"``) or a path to a TOML file."""
    text: str
    src = str(source)
    if src in preset_names():
        text = resources.files("sedma.presets").joinpath(f"{src}.toml").read_text("utf-8")
        name = src
    else:
        path = Path(src)
        if not path.is_file():
            raise SpecError(
                f"cluster {src!r} is neither a preset ({', '.join(preset_names())}) "
                "nor a readable TOML file"
            )
        try:
            nbytes = path.stat().st_size
            if nbytes > MAX_SPEC_BYTES:
                raise SpecError(
                    f"cluster file {src!r}: got {nbytes} bytes; a cluster file may be at most "
                    f"{MAX_SPEC_BYTES} bytes (use count = N for groups of identical nodes)"
                )
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError(f"cluster file {src!r} cannot be read: {e}") from None
        name = path.stem
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"cluster {src!r} is not valid TOML: {e}") from None
    return parse_cluster(data, name=name)
