"""The NAT matrix end to end over sedma's own transport: real NATs in network namespaces.

Covers issue 5 part 5. tests/netns/topology.py builds an internet namespace with coturn, one
NAT router per NATed host (iptables rules for full-cone, restricted, port-restricted and
symmetric NATs) and two hosts of every type. tests/netns/peer_agent.py probes the routers;
tests/netns/sedma_agent.py runs sedma.comm.net.transport's Peer (ICE hole punching with STUN,
TURN, authenticated encrypted channels) on the hosts and its Relay on the internet. The
tests check (1) that each router really shows its RFC 4787 mapping and filtering behaviour,
(2) for every unordered pair of NAT types, that both ends carry traffic on exactly the path
type :func:`sedma.comm.nat.path_type` names (direct: a TCP connection, dialled by the
controlling side when the other is reachable, else dialled back by the other after a
connection reversal through the relay; hole-punched: ICE over UDP; relayed: sedma's relay or
TURN, and the transport's TURN path works), that messages and a ~100 KB tensor arrive
intact, and that a relay path is usable within 1 s while the punch is still tried, and (3)
that a peer dialling with a forged key is refused and counted.

Not covered: RTT and loss emulation (no netem here; the transport's shim does that).
docs/nat-testing.md has the topology, the rules and results.
Set SEDMA_NAT_MATRIX_JSON=path to also write the measured matrix as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netns import topology
from sedma.comm.nat import NAT_TYPES, behaviour, path_type
from sedma.spec import NatType

pytestmark = pytest.mark.netns

_MISSING = topology.missing_prerequisite()
if _MISSING is not None:
    pytest.skip(_MISSING, allow_module_level=True)

AGENT = Path(__file__).resolve().parent / "netns" / "peer_agent.py"
SEDMA_AGENT = Path(__file__).resolve().parent / "netns" / "sedma_agent.py"
RELAY_PORT = 4100  # sedma's relay peer, next to coturn on the internet namespace
PEER_PORT = 4200  # + pair index: each pair's peers listen on their own port
INTRUDER_PAIR = 0  # this pair's controlling side first dials with a forged key
PAYLOAD_NBYTES = 100_000
MESSAGES = 5
DIRECT_TIMEOUT_S = 5.0  # punches here take at most one 500 ms retransmission; bounds failures
STEP_TIMEOUT_S = 30.0  # one signalling step of one agent
# Up to 30 agents start at once and each imports numpy, scipy and cryptography: on a cold
# 2-core machine (a fresh CI runner: no file cache, no .pyc) that alone took over 30 s.
STARTUP_TIMEOUT_S = 180.0
RELAY_USABLE_TARGET_S = 1.0
PROBE_PORT = 3001

PAIRS = [(a, b) for a, b in itertools.combinations_with_replacement(NAT_TYPES, 2)]


def expected_behaviour(nat: NatType) -> tuple[str, str]:
    """(mapping, filtering) the probe should see; a host without NAT acts as EIM + EIF."""
    rfc = behaviour(nat)
    return (rfc.mapping or "endpoint-independent", rfc.filtering or "endpoint-independent")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def topo() -> Iterator[topology.Topology]:
    topology.remove_stale()
    built = topology.build(hosts_per_type=2)
    try:
        yield built
    finally:
        built.teardown()


def _probe_args() -> list[str]:
    a, c, b = topology.PROBE_ADDRESSES
    return ["--a", a, "--b", b, "--c", c, "--port", str(PROBE_PORT)]


@pytest.fixture(scope="module")
def probes(topo: topology.Topology) -> dict[str, dict[str, Any]]:
    """Run the NAT behaviour probe from every host at once; results by host name."""
    server = subprocess.Popen(
        topology.ns_argv(
            topo.internet, [sys.executable, str(AGENT), "probe-server", *_probe_args()]
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    clients: dict[str, subprocess.Popen[str]] = {}
    try:
        assert server.stdout is not None
        assert json.loads(server.stdout.readline()) == {"op": "ready"}
        for name, host in topo.hosts.items():
            clients[name] = subprocess.Popen(
                topo.exec_argv(host, [sys.executable, str(AGENT), "probe-client", *_probe_args()]),
                stdout=subprocess.PIPE,
                text=True,
            )
        results = {}
        for name, client in clients.items():
            out, _ = client.communicate(timeout=30)
            results[name] = json.loads(out)
        return results
    finally:
        for proc in [*clients.values(), server]:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        if server.stdin is not None:
            server.stdin.close()
        if server.stdout is not None:
            server.stdout.close()


class AgentError(RuntimeError):
    pass


class _Agent:
    def __init__(self, proc: asyncio.subprocess.Process, label: str, log: Path) -> None:
        self.proc, self.label, self.log = proc, label, log

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-1500:]
        return ""

    async def read(self, op: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        timeout_s = STARTUP_TIMEOUT_S if op == "ready" else STEP_TIMEOUT_S
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        except TimeoutError:
            raise AgentError(f"{self.label}: no {op!r} within {timeout_s} s\n"
                             f"{self.tail()}") from None  # fmt: skip
        if not line:
            raise AgentError(f"{self.label}: exited before {op!r}\n{self.tail()}")
        msg: dict[str, Any] = json.loads(line)
        if msg.get("op") != op:
            raise AgentError(f"{self.label}: expected {op!r}, got {msg}\n{self.tail()}")
        return msg

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())


async def _spawn(
    topo: topology.Topology, namespace_argv: list[str], label: str, log: Path
) -> _Agent:
    with open(log, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *namespace_argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    return _Agent(proc, label, log)


def _reachable(host: topology.Host) -> bool:
    """No NAT, or a full cone (its router forwards what arrives at the mapped port)."""
    return host.nat in ("none", "full-cone")


def _name(host: topology.Host, k: int) -> str:
    return f"{host.name}.{k}"  # one peer per pair: a host takes part in several at once


async def _run_pair(
    topo: topology.Topology, a: topology.Host, b: topology.Host, k: int
) -> dict[str, Any]:
    """Two sedma peers (sedma.comm.net.transport.Peer with ICE), driven step by step."""
    agents: list[_Agent] = []
    port = PEER_PORT + k
    try:
        for role, host, other in (("controlling", a, b), ("controlled", b, a)):
            log = topo.workdir / f"{a.name}--{b.name}.{role}.log"
            argv = [
                sys.executable, str(SEDMA_AGENT), "peer", "--role", role,
                "--name", _name(host, k), "--other", _name(other, k), "--port", str(port),
                "--relay", f"{topology.TURN_ADDRESS}:{RELAY_PORT}",
                "--stun", f"{topology.TURN_ADDRESS}:{topology.TURN_PORT}",
                "--turn-user", topology.TURN_USER,
                "--turn-password", topology.TURN_PASSWORD,
                "--seed", str(k * 2 + len(agents)),
                "--payload-nbytes", str(PAYLOAD_NBYTES),
                "--messages", str(MESSAGES),
                "--upgrade-timeout", str(DIRECT_TIMEOUT_S),
            ]  # fmt: skip
            if _reachable(other):  # its (router's) address is worth dialling
                argv += ["--other-direct", f"{other.public_address}:{port}"]
            if _reachable(host):  # so it asks a peer it cannot dial to dial it instead
                argv += ["--advertise", f"{host.public_address}:{port}"]
            if role == "controlling" and k == INTRUDER_PAIR:
                argv.append("--intruder")
            agents.append(
                await _spawn(topo, topo.exec_argv(host, argv), f"{host.name} ({role})", log)
            )
        ag_a, ag_b = agents
        await asyncio.gather(ag_a.read("ready"), ag_b.read("ready"))
        for agent in agents:
            agent.send({"op": "go"})
        conn_a, conn_b = await asyncio.gather(ag_a.read("connected"), ag_b.read("connected"))
        for agent in agents:
            agent.send({"op": "exchange"})
        done_a, done_b = await asyncio.gather(ag_a.read("done"), ag_b.read("done"))
        for agent in agents:
            agent.send({"op": "close"})
        codes = await asyncio.wait_for(
            asyncio.gather(*(agent.proc.wait() for agent in agents)), STEP_TIMEOUT_S
        )
        if any(codes):
            raise AgentError(f"agents exited {codes}\n{ag_a.tail()}\n{ag_b.tail()}")
        return {"connected": [conn_a, conn_b], "done": [done_a, done_b]}
    finally:
        for agent in agents:
            if agent.proc.returncode is None:
                agent.proc.kill()
                await agent.proc.wait()


def _dialable(nat_a: NatType, nat_b: NatType) -> bool:
    """Whether the controlling side (``a``) can dial ``b`` itself (else ``b`` dials back)."""
    return nat_b in ("none", "full-cone")


def _pairs(topo: topology.Topology) -> list[tuple[topology.Host, topology.Host]]:
    return [
        (topo.host(nat_a, 1), topo.host(nat_b, 2 if nat_a == nat_b else 1))
        for nat_a, nat_b in PAIRS
    ]


async def _run_matrix(topo: topology.Topology) -> dict[tuple[NatType, NatType], Any]:
    pairs = _pairs(topo)
    names = [_name(h, k) for k, pair in enumerate(pairs) for h in pair]
    relay = await _spawn(
        topo,
        topology.ns_argv(
            topo.internet,
            [sys.executable, str(SEDMA_AGENT), "relay", "--relay-name", "relay",
             "--listen", f"{topology.TURN_ADDRESS}:{RELAY_PORT}", "--names", ",".join(names)],
        ),
        "relay",
        topo.workdir / "relay.log",
    )  # fmt: skip
    try:
        await relay.read("ready")
        jobs = [_run_pair(topo, a, b, k) for k, (a, b) in enumerate(pairs)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
    finally:
        if relay.proc.stdin is not None:
            relay.proc.stdin.close()
        with contextlib.suppress(TimeoutError, ProcessLookupError):
            await asyncio.wait_for(relay.proc.wait(), 5.0)
        if relay.proc.returncode is None:
            relay.proc.kill()
            await relay.proc.wait()
    return dict(zip(PAIRS, results, strict=True))


def _summary_row(pair: tuple[NatType, NatType], result: Any) -> dict[str, Any]:
    if isinstance(result, BaseException):
        return {"pair": list(pair), "error": repr(result)}
    conn_a = result["connected"][0]
    done_a, done_b = result["done"]
    return {
        "pair": list(pair),
        "expected": path_type(*pair),
        "kind": [done_a["kind"], done_b["kind"]],
        "first_kind": conn_a["first_kind"],
        "kind_at_first_message": conn_a["kind_at_first_message"],
        "relay_usable_s": conn_a["relay_usable_s"],
        "upgraded_s": conn_a["upgraded_s"],
        "paths": [f"{p['kind']}{'*' if p['active'] else ''} {p['via']}" for p in done_a["paths"]],
        "exchange_s": max(d["exchange_s"] for d in result["done"]),
        "intrusion": conn_a["intrusion"],
        "auth_drops": done_b["stats"]["dropped_bad_auth"] + done_b["stats"]["dropped_unknown_peer"],
    }


@pytest.fixture(scope="module")
def matrix(topo: topology.Topology) -> dict[tuple[NatType, NatType], Any]:
    start = time.monotonic()
    results = asyncio.run(_run_matrix(topo))
    elapsed_s = time.monotonic() - start
    rows = [_summary_row(pair, result) for pair, result in results.items()]
    out = os.environ.get("SEDMA_NAT_MATRIX_JSON")
    if out:
        Path(out).write_text(json.dumps({"elapsed_s": elapsed_s, "pairs": rows}, indent=2))
    print(f"\nNAT matrix over sedma's transport ({len(PAIRS)} pairs in parallel, "
          f"{elapsed_s:.1f} s):")  # fmt: skip
    for row in rows:
        print("  " + json.dumps(row))
    return results


# -------------------------------------------------------------------------------- tests


def _classify(probe: dict[str, Any]) -> tuple[str, str]:
    mapped = probe["mapped"]
    if mapped["A1"] != mapped["A2"]:
        mapping = "address-and-port-dependent"
    elif mapped["A1"] != mapped["B1"]:
        mapping = "address-dependent"
    else:
        mapping = "endpoint-independent"
    got = set(probe["filter_received"])
    if "C1" in got:
        filtering = "endpoint-independent"
    elif "A3" in got:
        filtering = "address-dependent"
    else:
        filtering = "address-and-port-dependent"
    return mapping, filtering


@pytest.mark.parametrize("host_name", [f"{nat}-{i}" for nat in NAT_TYPES for i in (1, 2)])
def test_router_shows_its_rfc4787_behaviour(
    host_name: str, topo: topology.Topology, probes: dict[str, dict[str, Any]]
) -> None:
    host = topo.hosts[host_name]
    probe = probes[host_name]
    assert set(probe["mapped"]) == {"A1", "A2", "B1"}, f"probe server unreachable: {probe}"
    assert _classify(probe) == expected_behaviour(host.nat), probe
    # Every mapping is on the router's public address; without NAT it is the host itself.
    assert {ip for ip, _ in probe["mapped"].values()} == {host.public_address}
    if host.nat != "symmetric":
        # Linux keeps the source port when it is free: the cone mappings preserve the port.
        assert probe["mapped"]["A1"][1] == probe["local_port"]


@pytest.mark.parametrize(("nat_a", "nat_b"), PAIRS, ids=[f"{a}--{b}" for a, b in PAIRS])
def test_pair_connects_as_the_nat_model_says(
    nat_a: NatType, nat_b: NatType, matrix: dict[tuple[NatType, NatType], Any]
) -> None:
    result = matrix[(nat_a, nat_b)]
    if isinstance(result, BaseException):
        raise result
    expected = path_type(nat_a, nat_b)
    conn_a = result["connected"][0]
    done_a, done_b = result["done"]
    kinds = {p["kind"] for d in (done_a, done_b) for p in d["paths"]}
    # Exactly the path the NAT model names, at both ends: direct (a TCP connection, dialled
    # or reversed), hole-punched (an ICE UDP path through both NATs) or relayed.
    assert done_a["kind"] == done_b["kind"] == expected, (done_a["paths"], done_b["paths"])
    if expected == "direct":
        # Dialled by whoever can: the reversal counters say which side did.
        reversed_ = done_b["stats"]["reversals_dialled"] + done_a["stats"]["reversals_dialled"]
        assert reversed_ == (0 if _dialable(nat_a, nat_b) else 1), (done_a["stats"], done_b)
    elif expected == "relayed":
        # A punch that worked where the model says it cannot would mean a router more
        # permissive than its NAT type: no direct or hole-punched path may ever come up.
        assert kinds <= {"relayed"}, (done_a["paths"], done_b["paths"])
        # ... and the transport's own TURN session works through the NATs (coturn).
        assert any(p["via"].startswith("ice") for p in done_a["paths"]), done_a["paths"]
    # Messages and payload arrive intact, both ways.
    for sent, received in ((done_a, done_b), (done_b, done_a)):
        assert received["received"]["messages"] == sent["sent"]["messages"]
        assert received["received"]["nbytes"] == sent["sent"]["nbytes"] == PAYLOAD_NBYTES
        assert received["received"]["sha256"] == sent["sent"]["sha256"]
    # A relay path is usable within 1 s while the punch is still being tried: between two
    # NATed peers the first path is sedma's relay, the first message went over it, and
    # any upgrade came after.
    assert conn_a["relay_usable_s"] < RELAY_USABLE_TARGET_S, conn_a
    if expected != "direct":
        assert conn_a["first_kind"] == conn_a["kind_at_first_message"] == "relayed", conn_a
        if conn_a["upgraded_s"] is not None:
            assert conn_a["upgraded_s"] >= conn_a["relay_usable_s"]
    # The relay stays as a warm standby behind whatever path carries the traffic.
    assert "relayed" in {p["kind"] for p in done_a["paths"]}, done_a["paths"]


def test_a_forged_key_is_refused_and_counted(
    matrix: dict[tuple[NatType, NatType], Any],
) -> None:
    result = matrix[PAIRS[INTRUDER_PAIR]]
    if isinstance(result, BaseException):
        raise result
    conn_a = result["connected"][0]
    assert conn_a["intrusion"].startswith("refused"), conn_a["intrusion"]
    stats = result["done"][1]["stats"]
    assert stats["dropped_bad_auth"] + stats["dropped_unknown_peer"] >= 1, stats
