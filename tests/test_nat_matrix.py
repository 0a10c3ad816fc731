"""The NAT matrix end to end: real NATs in network namespaces, ICE over STUN/TURN (coturn).

Covers issue 5 part 5. tests/netns/topology.py builds an internet namespace with coturn, one
NAT router per NATed host (iptables rules for full-cone, restricted, port-restricted and
symmetric NATs) and two hosts of every type; tests/netns/peer_agent.py runs on the hosts. The
tests check (1) that each router really shows its RFC 4787 mapping and filtering behaviour,
and (2) for every unordered pair of NAT types, that pairs the NAT model calls directly
connectable connect without a relay, that all others connect through TURN, that messages and
a ~100 KB payload arrive intact, and that the relay path is usable within 1 s.

Not covered: RTT and loss emulation (no netem here; the transport's shim does that), sedma's
own transport (its own tests). docs/nat-testing.md has the topology, the rules and results.
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
from sedma.comm.nat import NAT_TYPES, NatType, behaviour, path_type

pytestmark = pytest.mark.netns

_MISSING = topology.missing_prerequisite()
if _MISSING is not None:
    pytest.skip(_MISSING, allow_module_level=True)

AGENT = Path(__file__).resolve().parent / "netns" / "peer_agent.py"
PAYLOAD_NBYTES = 100_000
MESSAGES = 5
DIRECT_TIMEOUT_S = 5.0  # punches here take at most one 500 ms retransmission; bounds failures
STEP_TIMEOUT_S = 30.0  # one signalling step of one agent
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
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), STEP_TIMEOUT_S)
        except TimeoutError:
            raise AgentError(f"{self.label}: no {op!r} within {STEP_TIMEOUT_S} s\n"
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


async def _run_pair(
    topo: topology.Topology, a: topology.Host, b: topology.Host, seed: int
) -> dict[str, Any]:
    """Run two ICE agents, relay their signalling, pick the path; both sides' reports."""
    agents: list[_Agent] = []
    try:
        for role, host in (("controlling", a), ("controlled", b)):
            log = topo.workdir / f"{a.name}--{b.name}.{role}.log"
            argv = [
                sys.executable, str(AGENT), "ice", "--role", role,
                "--stun", f"{topology.TURN_ADDRESS}:{topology.TURN_PORT}",
                "--turn", f"{topology.TURN_ADDRESS}:{topology.TURN_PORT}",
                "--turn-user", topology.TURN_USER,
                "--turn-password", topology.TURN_PASSWORD,
                "--seed", str(seed * 2 + len(agents)),
                "--payload-nbytes", str(PAYLOAD_NBYTES),
                "--messages", str(MESSAGES),
                "--direct-timeout", str(DIRECT_TIMEOUT_S),
            ]  # fmt: skip
            with open(log, "wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    *topo.exec_argv(host, argv),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                )
            agents.append(_Agent(proc, f"{host.name} ({role})", log))
        ag_a, ag_b = agents
        offer_a, offer_b = await asyncio.gather(ag_a.read("offer"), ag_b.read("offer"))
        ag_a.send({**offer_b, "op": "answer"})
        ag_b.send({**offer_a, "op": "answer"})
        conn_a, conn_b = await asyncio.gather(ag_a.read("connected"), ag_b.read("connected"))
        # Upgrade only when both ends completed the direct session; otherwise stay relayed.
        path = "direct" if conn_a["direct_ok"] and conn_b["direct_ok"] else "relay"
        for agent in agents:
            agent.send({"op": "use", "path": path})
        done_a, done_b = await asyncio.gather(ag_a.read("done"), ag_b.read("done"))
        for agent in agents:
            agent.send({"op": "close"})
        codes = await asyncio.wait_for(
            asyncio.gather(*(agent.proc.wait() for agent in agents)), STEP_TIMEOUT_S
        )
        if any(codes):
            raise AgentError(f"agents exited {codes}\n{ag_a.tail()}\n{ag_b.tail()}")
        return {"path": path, "connected": [conn_a, conn_b], "done": [done_a, done_b]}
    finally:
        for agent in agents:
            if agent.proc.returncode is None:
                agent.proc.kill()
                await agent.proc.wait()


async def _run_matrix(topo: topology.Topology) -> dict[tuple[NatType, NatType], Any]:
    jobs = []
    for seed, (nat_a, nat_b) in enumerate(PAIRS):
        host_a = topo.host(nat_a, 1)
        host_b = topo.host(nat_b, 2 if nat_a == nat_b else 1)
        jobs.append(_run_pair(topo, host_a, host_b, seed))
    results = await asyncio.gather(*jobs, return_exceptions=True)
    return dict(zip(PAIRS, results, strict=True))


def _summary_row(pair: tuple[NatType, NatType], result: Any) -> dict[str, Any]:
    if isinstance(result, BaseException):
        return {"pair": list(pair), "error": repr(result)}
    done_a = result["done"][0]
    conns = result["connected"]
    direct_s = [c["direct_connect_s"] for c in conns if c["direct_connect_s"] is not None]
    return {
        "pair": list(pair),
        "expected": path_type(*pair),
        "path": result["path"],
        "candidates": f"{done_a['pair']['local']}/{done_a['pair']['remote']}",
        "candidates_other_side": "{local}/{remote}".format(**result["done"][1]["pair"]),
        "relay_usable_s": max(c["relay_usable_s"] for c in conns),
        "relay_gather_s": max(c["relay_gather_s"] for c in conns),
        "relay_connect_s": max(c["relay_connect_s"] for c in conns),
        "relay_first_msg_s": max(c["relay_first_msg_s"] for c in conns),
        "direct_pending_at_relay_ready": any(c["direct_pending_at_relay_ready"] for c in conns),
        "direct_connect_s": max(direct_s) if len(direct_s) == 2 else None,
        "exchange_s": max(d["exchange_s"] for d in result["done"]),
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
    print(f"\nNAT matrix ({len(PAIRS)} pairs in parallel, {elapsed_s:.1f} s):")
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
    conn_a, conn_b = result["connected"]
    done_a, done_b = result["done"]
    if expected in ("direct", "hole-punched"):
        assert result["path"] == "direct", (conn_a, conn_b)
        for done in (done_a, done_b):
            assert done["pair"]["local"] in ("host", "srflx", "prflx"), done["pair"]
            assert done["pair"]["remote"] in ("host", "srflx", "prflx"), done["pair"]
    else:
        # The direct session must fail on both sides: a punch that works where the model
        # says it cannot would mean a router is more permissive than its NAT type.
        assert not conn_a["direct_ok"] and not conn_b["direct_ok"], (conn_a, conn_b)
        assert result["path"] == "relay"
        for done in (done_a, done_b):
            assert (done["pair"]["local"], done["pair"]["remote"]) == ("relay", "relay")
    # Messages and payload arrive intact, both ways.
    for sent, received in ((done_a, done_b), (done_b, done_a)):
        assert received["received"]["messages"] == sent["sent"]["messages"]
        assert received["received"]["nbytes"] == sent["sent"]["nbytes"] == PAYLOAD_NBYTES
        assert received["received"]["sha256"] == sent["sent"]["sha256"]
    # The relay path works for every pair (it is the fallback) and is usable within 1 s.
    for done in (done_a, done_b):
        assert done["received"]["relay_hello"] is not None
    for conn in (conn_a, conn_b):
        assert conn["relay_pair"]["local"] == conn["relay_pair"]["remote"] == "relay"
        assert conn["relay_usable_s"] < RELAY_USABLE_TARGET_S, conn
