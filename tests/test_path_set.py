"""A channel's choice of path (``PathSet``) and its hello codec (``Hello``), sans-IO."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import msgpack
import pytest

from sedma.comm.net.delivery import Hello
from sedma.comm.net.framing import FrameError
from sedma.comm.net.path import _Path
from sedma.comm.net.path_set import PathInfo, PathSet


@dataclass
class _FakePath:
    kind: str
    via: str
    opened_s: float
    rtt_s: float | None = None


def _path(kind: str, via: str, opened_s: float) -> _Path:
    return cast(_Path, _FakePath(kind, via, opened_s))


def test_first_path_carries_traffic_a_better_kind_takes_over_a_worse_one_stands_by() -> None:
    ps = PathSet()
    relayed = _path("relayed", "r1", 0.0)
    direct = _path("direct", "10.0.0.2:7000", 1.0)
    punched = _path("hole-punched", "ice", 2.0)
    assert ps.add(relayed) == ("path_up", None) and ps.active is relayed
    assert ps.add(direct) == ("upgrade", relayed) and ps.active is direct
    assert ps.add(punched) == ("standby", direct) and ps.active is direct
    assert [ps.info(p) for p in ps] == [
        PathInfo("relayed", "r1", None, False),
        PathInfo("direct", "10.0.0.2:7000", None, True),
        PathInfo("hole-punched", "ice", None, False),
    ]


def test_losing_the_path_in_use_moves_traffic_to_the_best_standby() -> None:
    ps = PathSet()
    direct, old_relay, new_relay = (
        _path("direct", "d", 0.0),
        _path("relayed", "r1", 1.0),
        _path("relayed", "r2", 2.0),
    )
    for p in (direct, new_relay, old_relay):
        ps.add(p)
    assert ps.remove(new_relay) is False and ps.active is direct
    assert ps.remove(direct) is True and ps.active is old_relay
    assert ps.remove(old_relay) is True and ps.active is None and not ps


def test_a_pinned_path_keeps_the_traffic_over_a_better_kind_while_it_lives() -> None:
    ps = PathSet()
    relayed, direct = _path("relayed", "r1", 0.0), _path("direct", "d", 1.0)
    ps.add(relayed)
    assert ps.pin("nowhere") is None and ps.active is relayed
    assert ps.pin("r1") is relayed
    assert ps.add(direct) == ("standby", relayed) and ps.active is relayed
    assert ps.remove(relayed) is True and ps.active is direct  # the pin died with its path


@pytest.mark.parametrize(
    ("standbys", "newcomer", "evicted"),
    [
        ((("relayed", 1.0), ("relayed", 2.0)), "direct", 1.0),  # the oldest of the worst kind
        ((("hole-punched", 1.0), ("relayed", 2.0)), "hole-punched", 2.0),
        ((("hole-punched", 1.0),), "hole-punched", None),  # not better: it does not join
        ((), "direct", None),  # only the path in use: nothing to evict
    ],
)
def test_at_the_limit_a_better_path_evicts_the_worst_standby(
    standbys: tuple[tuple[str, float], ...], newcomer: str, evicted: float | None
) -> None:
    ps = PathSet()
    ps.add(_path("direct", "in-use", 0.0))
    for i, (kind, opened_s) in enumerate(standbys):
        ps.add(_path(kind, f"s{i}", opened_s))
    worst = ps.to_evict(_path(newcomer, "new", 9.0))
    assert (None if worst is None else worst.opened_s) == evicted


def test_hello_round_trips_and_an_older_sender_may_omit_its_accept_window() -> None:
    hello = Hello(b"inc", None, 3, 64, 128, 1 << 20)
    assert Hello.unpack(hello.pack()) == hello
    old = msgpack.packb({"inc": b"inc", "you": b"me", "consumed": 0, "window": 8})
    assert Hello.unpack(old) == Hello(b"inc", b"me", 0, 8, None, None)


@pytest.mark.parametrize(
    "fields",
    [
        {"inc": "text", "you": None, "consumed": 0, "window": 8},
        {"inc": b"i", "you": None, "consumed": 0.5, "window": 8},
        {"inc": b"i", "you": None, "consumed": 0, "window": True},
        {"inc": b"i", "consumed": 0, "window": 8},
    ],
)
def test_a_malformed_hello_is_a_frame_error(fields: dict[str, Any]) -> None:
    with pytest.raises(FrameError):
        Hello.unpack(msgpack.packb(fields))
