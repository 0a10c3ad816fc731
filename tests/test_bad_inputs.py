"""Every bad input found so far (issue 15 and the probes before it), in one table.

Each row feeds one bad input to the boundary that takes it (a cluster file, a memory store,
bytes off the wire, a setting) and requires one :class:`~sedma.errors.SedmaError` of the
expected kind whose message names what is wrong, within 5 s: no traceback of another type,
no hang, and (for stores) the file left exactly as it was. Two rows go through the command
line as a user would. Behaviour on live connections (forged, replayed and oversized frames,
the flood of idle sockets) is tested where the connections are: tests/test_transport.py and
tests/test_resource_limits.py.
"""

from __future__ import annotations

import hashlib
import random
import re
import sqlite3
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from sedma.bench.soak import bench_soak
from sedma.bench.transport import Sizes
from sedma.bench.transport_std import bench_transport_std
from sedma.cli.app import app
from sedma.comm.net.framing import FrameDecoder, FrameError
from sedma.comm.net.limits import LimitError, ResourceLimits
from sedma.comm.net.message import decode_message
from sedma.comm.net.secure import Responder
from sedma.errors import MemoryStoreError, SedmaError, SpecError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.schema import SCHEMA_VERSION
from sedma.spec_load import MAX_SPEC_BYTES, load_cluster

SMALL = resources.files("sedma.presets").joinpath("small.toml").read_text("utf-8")
NODE = """
[[node]]
name = "{name}"
kind = "cpu"
site = "dc"
matmul_gflops = {gflops}
memory_gib = 8.0
mem_bandwidth_gbs = 50.0
{extra}
"""
RRAM = """
[[node]]
name = "x"
kind = "rram"
site = "dc"
matmul_gflops = 100.0
memory_gib = 1.0
mem_bandwidth_gbs = 10.0
[node.crossbar]
rows = {rows}
cols = 128
arrays = {arrays}
bits_per_cell = 4
program_noise = 0.02
read_noise = 0.01
stuck_on_rate = 0.001
stuck_off_rate = 0.002
drift_per_decade = 0.01
dac_bits = 8
adc_bits = 8
ir_drop = 0.05
"""


def cluster(body: str) -> str:
    return '[[site]]\nname = "dc"\n' + body


def node(name: str = "n", gflops: str = "100.0", extra: str = "") -> str:
    return NODE.format(name=name, gflops=gflops, extra=extra)


# -- makers: each returns the callable that must fail, given a fresh directory
def spec_file(text: str | bytes) -> Callable[[Path], Callable[[], object]]:
    def make(tmp: Path) -> Callable[[], object]:
        path = tmp / "cluster.toml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return lambda: load_cluster(path)

    return make


def huge_spec(tmp: Path) -> Callable[[], object]:
    path = tmp / "huge.toml"
    path.write_text(cluster(node()) + "# " + "x" * MAX_SPEC_BYTES + "\n")
    return lambda: load_cluster(path)


def store_with_runs(path: Path) -> None:
    with LongTermMemory(path) as store:
        for i in range(200):
            store.end_run(store.start_run("ctx", "c", "w", {"i": i, "pad": "p" * 500}), {})


def damaged_store(seed: int) -> Callable[[Path], Callable[[], object]]:
    """A real store with three pages overwritten by random bytes, mid-file (not page 1)."""

    def make(tmp: Path) -> Callable[[], object]:
        path = tmp / "m.db"
        store_with_runs(path)
        rng = random.Random(seed)
        pages = path.stat().st_size // 4096
        with path.open("r+b") as f:
            for page in rng.sample(range(1, pages), 3):
                f.seek(page * 4096)
                f.write(rng.randbytes(4096))

        def use() -> object:
            with LongTermMemory(path) as store:
                return store.runs(1000)

        return use

    return make


def foreign_store(tmp: Path) -> Callable[[], object]:
    path = tmp / "m.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    raw.close()
    return lambda: LongTermMemory(path)


def garbage_store(tmp: Path) -> Callable[[], object]:
    (tmp / "m.db").write_bytes(random.Random(1).randbytes(8192))
    return lambda: LongTermMemory(tmp / "m.db")


def newer_store(tmp: Path) -> Callable[[], object]:
    path = tmp / "m.db"
    LongTermMemory(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET schema_version = ?", (SCHEMA_VERSION + 1,))
    raw.close()
    return lambda: LongTermMemory(path)


def wire(data: bytes, max_frame: int = 4096) -> Callable[[Path], Callable[[], object]]:
    return lambda _tmp: lambda: FrameDecoder(max_frame).feed(data)


def hs1(payload: bytes) -> Callable[[Path], Callable[[], object]]:
    key = Ed25519PrivateKey.generate()
    return lambda _tmp: lambda: Responder("b", key, {"b": key.public_key()}).respond(payload)


@dataclass(frozen=True)
class Bad:
    make: Callable[[Path], Callable[[], object]]
    error: type[SedmaError]
    match: str


BAD_INPUTS: dict[str, Bad] = {
    # cluster files (issue 15: count of 100,000 hung `sedma plan`)
    "count 100,000": Bad(spec_file(cluster(node(extra="count = 100000"))), SpecError,
                         r"node\[0\]\.count.*100000.*at most 10000 nodes"),
    "count 10^8": Bad(spec_file(cluster(node(extra="count = 100000000"))), SpecError,
                      r"count.*at most 10000"),
    "counts adding up past the limit": Bad(
        spec_file(cluster(node("a", extra="count = 6000") + node("b", extra="count = 6000"))),
        SpecError, r"node\[1\]\.count.*6000 before"),
    "count 0": Bad(spec_file(cluster(node(extra="count = 0"))), SpecError, r"count.*>= 1"),
    "count as a string": Bad(spec_file(cluster(node(extra='count = "3"'))), SpecError,
                             r"count.*must be an integer"),
    "1,001 sites": Bad(spec_file("".join(f'[[site]]\nname = "s{i}"\n' for i in range(1001))),
                       SpecError, r"at most 1000 \[\[site\]\]"),
    "name of 200 characters": Bad(spec_file(cluster(node("n" * 200))), SpecError,
                                  r"name.*at most 128 characters"),
    "gflops 1e300 (overflowed an int)": Bad(spec_file(cluster(node(gflops="1e300"))),
                                            SpecError, r"matmul_gflops.*<= 1e\+09"),
    "memory nan": Bad(spec_file(cluster(node().replace("8.0", "nan"))), SpecError,
                      r"memory_gib.*finite"),
    "bandwidth inf": Bad(spec_file(cluster(node()) + '[[site]]\nname = "e"\n'
                                   '[[link]]\na = "dc"\nb = "e"\nrtt_ms = 1.0\n'
                                   "bandwidth_mbps = inf\n"), SpecError, r"bandwidth_mbps"),
    "crossbar rows 100,000": Bad(spec_file(cluster(RRAM.format(rows=100000, arrays=8))),
                                 SpecError, r"crossbar\.rows.*between 1 and 8192"),
    "crossbar arrays 10^9": Bad(spec_file(cluster(RRAM.format(rows=128, arrays=10**9))),
                                SpecError, r"crossbar\.arrays"),
    "file over 16 MiB": Bad(huge_spec, SpecError, r"at most 16777216 bytes"),
    "unknown key": Bad(spec_file(cluster(node(extra="colour = 1"))), SpecError,
                       r"node\[0\]\.colour.*unknown key"),
    "link to an unknown site": Bad(spec_file(cluster(node()) + '[[link]]\na = "dc"\nb = "mars"\n'
                                             "rtt_ms = 1.0\nbandwidth_mbps = 1.0\n"),
                                   SpecError, r"link\[0\]\.b.*'mars'"),
    "duplicate names after count": Bad(
        spec_file(cluster(node("g", extra="count = 2") + node("g-1"))), SpecError,
        r"node\.name.*'g-1'.*unique"),
    "loss of 1": Bad(spec_file(cluster(node()) + '[[site]]\nname = "e"\n[[link]]\na = "dc"\n'
                               'b = "e"\nrtt_ms = 1.0\nbandwidth_mbps = 1.0\nloss = 1.0\n'),
                     SpecError, r"loss.*< 1"),
    "not TOML": Bad(spec_file("[[node]\nname ="), SpecError, r"not valid TOML"),
    "not UTF-8": Bad(spec_file(b"\xff\xfe[[site]]"), SpecError, r"cannot be read"),
    "the preset file mangled": Bad(spec_file(SMALL.replace("[[node]]", "[[nodes]]", 1)),
                                   SpecError, r"nodes.*unknown key"),
    # memory stores (issue 15: damaged pages were called "not a sedma memory store")
    "store with pages overwritten (seed 1)": Bad(damaged_store(1), MemoryStoreError,
                                                 r"is damaged.*integrity check.*recover"),
    "store with pages overwritten (seed 2)": Bad(damaged_store(2), MemoryStoreError,
                                                 r"is damaged.*integrity check.*recover"),
    "store with pages overwritten (seed 3)": Bad(damaged_store(3), MemoryStoreError,
                                                 r"is damaged.*integrity check.*recover"),
    "random bytes as a store": Bad(garbage_store, MemoryStoreError, r"not a SQLite database"),
    "someone else's database": Bad(foreign_store, MemoryStoreError,
                                   r"not a sedma memory store"),
    "store from a newer sedma": Bad(newer_store, MemoryStoreError, r"newer"),
    "a directory as the store": Bad(lambda tmp: lambda: LongTermMemory(tmp), MemoryStoreError,
                                    r"directory"),
    # bytes off the wire, before authentication
    "frame longer than the handshake cap": Bad(wire(struct.pack("!IB", 1 << 20, 1)), FrameError,
                                               r"oversized"),
    "frame of length 4 GiB": Bad(wire(struct.pack("!IB", 0xFFFFFFFF, 0x11), 1 << 31),
                                 FrameError, r"oversized"),
    "frame of length 0": Bad(wire(struct.pack("!IB", 0, 0x10)), FrameError, r"malformed"),
    "unknown frame type": Bad(wire(struct.pack("!IB", 5, 0x7F)), FrameError, r"malformed"),
    "HS1 that is not msgpack": Bad(hs1(b"\xc1\xc1\xc1"), SedmaError, r"HS1|malformed"),
    "HS1 with wrong field types": Bad(hs1(msgpack.packb([1, 2, 3, 4, 5, 6, 7])), SedmaError,
                                      r"HS1|malformed|name"),
    "message body that lies about its header": Bad(
        lambda _tmp: lambda: decode_message(struct.pack("!I", 1 << 30) + b"x"), FrameError,
        r"malformed"),
    # settings
    "limits below the protocol's minimum window": Bad(
        lambda _tmp: lambda: ResourceLimits(max_streams_per_peer=4), LimitError,
        r"max_streams_per_peer.*4.*>= 16"),
    "transport benchmark of an unknown protocol": Bad(
        lambda _tmp: lambda: bench_transport_std("sctp"), SedmaError,  # type: ignore[arg-type]
        r"protocol.*sctp.*tls, quic"),
    "transport benchmark with no rounds": Bad(
        lambda _tmp: lambda: bench_transport_std("tls", sizes=Sizes(rounds=0)), SedmaError,
        r"rounds.*0.*>= 1"),
    "soak of no time": Bad(lambda _tmp: lambda: bench_soak(0), SedmaError,
                           r"minutes.*0.*\(0, 1440\]"),
}  # fmt: skip


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def within(fn: Callable[[], object], timeout_s: float) -> BaseException | None:
    """Run ``fn`` in a thread; what it raised, or AssertionError if it is still running."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # handed to the test to judge
            outcome.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return AssertionError(f"still running after {timeout_s} s: a hang")
    return outcome[0]


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_gets_one_clear_error_fast_and_changes_nothing(case: str, tmp_path: Path) -> None:
    bad = BAD_INPUTS[case]
    trigger = bad.make(tmp_path)
    before = sha(tmp_path / "m.db")
    raised = within(trigger, 5.0)
    assert isinstance(raised, bad.error), f"{case}: {raised!r}"
    assert re.search(bad.match, str(raised)), f"{case}: {raised}"
    assert sha(tmp_path / "m.db") == before  # a store we refuse is left exactly as it was


runner = CliRunner()


@pytest.mark.parametrize(
    ("case", "args"),
    [("count 100,000", ["plan", "--cluster"]),
     ("store with pages overwritten (seed 1)", ["memory", "--memory"])],
)  # fmt: skip
def test_bad_input_on_the_command_line_is_one_line_and_exit_2(
    case: str, args: list[str], tmp_path: Path
) -> None:
    BAD_INPUTS[case].make(tmp_path)
    target = tmp_path / ("cluster.toml" if args[0] == "plan" else "m.db")
    result = runner.invoke(app, [*args, str(target)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "error" in result.output


@pytest.mark.parametrize(
    "protocols", ["sctp", "sedma,sedma", "", "tls,quic,http"]
)  # fmt: skip
def test_a_bad_transport_protocol_list_is_one_line_and_exit_2(protocols: str) -> None:
    result = runner.invoke(app, ["bench", "transport", "--protocols", protocols])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "--protocols" in result.output and "sedma, tls, quic" in result.output
