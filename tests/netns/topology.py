"""Network-namespace topology for the real-NAT tests: build it, run commands in it, remove it.

Covers one "internet" namespace that routes between public subnets and runs coturn (STUN and
TURN), one NAT router namespace per NATed host whose iptables rules give the RFC 4787
behaviour of a spec NAT name, host namespaces behind those routers, and public hosts on the
internet itself. It does not cover what runs on the hosts (tests/netns/peer_agent.py) or which
pair should connect how (sedma.comm.nat); docs/nat-testing.md has the diagram and the rules.

Every address lives inside namespaces created here: the public side uses 198.18.0.0/15 (the
RFC 2544 benchmarking range), the private sides 10.200.0.0/16, and veth pairs are created
directly inside namespaces, so the machine's own interfaces and routes are never touched.
Namespace names start with ``sedma-<pid>-``: a run removes its own namespaces, and at start
those of earlier runs whose process is gone, never those of a run still going.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sedma.comm.nat import NAT_TYPES
from sedma.spec import NatType

_SHORT = {
    "none": "pub",
    "full-cone": "fc",
    "restricted": "rc",
    "port-restricted": "prc",
    "symmetric": "sym",
}

PREFIX = "sedma-"
TURN_ADDRESS = "198.18.0.1"
TURN_PORT = 3478
TURN_USER = "sedma"
TURN_PASSWORD = "sedma-netns-test"
TURN_REALM = "sedma.test"
# Extra internet addresses for the NAT behaviour probe (peer_agent.py probe-server): .2 is the
# address whose ports test mapping and port filtering, .4 a second destination for mapping,
# .3 an address no host ever sends to, for address filtering.
PROBE_ADDRESSES = ("198.18.0.2", "198.18.0.3", "198.18.0.4")

_WORKDIR_PREFIX = "sedma-netns-"
_CMD_TIMEOUT_S = 10.0


class TopologyError(RuntimeError):
    """A command that builds or removes the topology failed; the message has its output."""


def run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one command, capturing its output; raise TopologyError naming it on failure."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=_CMD_TIMEOUT_S, check=False)
    if check and proc.returncode != 0:
        raise TopologyError(
            f"{' '.join(argv)!r} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}"
        )
    return proc


def ns_argv(namespace: str, argv: list[str]) -> list[str]:
    """The argv that runs ``argv`` inside ``namespace``."""
    return ["ip", "netns", "exec", namespace, *argv]


def ns_run(namespace: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(ns_argv(namespace, list(argv)), check=check)


def missing_prerequisite() -> str | None:
    """Why the namespace tests cannot run here, in one line, or None if they can."""
    if os.geteuid() != 0:
        return "NAT matrix tests need root (network namespaces and iptables); not root"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"), ("turnserver", "coturn")):
        if shutil.which(tool) is None:
            return f"NAT matrix tests need `{tool}` (Debian package {package}); not installed"
    name = f"{PREFIX}{os.getpid()}-check"
    made = run(["ip", "netns", "add", name], check=False)
    if made.returncode != 0:
        return f"NAT matrix tests cannot create a network namespace: {made.stderr.strip()}"
    try:
        probe = ns_run(name, "iptables", "-t", "nat", "-L", "-n", check=False)
        if probe.returncode != 0:
            return f"NAT matrix tests cannot use iptables in a namespace: {probe.stderr.strip()}"
    finally:
        run(["ip", "netns", "del", name], check=False)
    return None


def _namespaces() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_namespace(namespace: str) -> None:
    """Stop what still runs in ``namespace`` (only ever started by this harness), delete it."""
    pids = run(["ip", "netns", "pids", namespace], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)
    run(["ip", "netns", "del", namespace], check=False)


def _owner_gone(name: str, prefix: str) -> bool:
    """Whether ``name`` (``<prefix><pid>-...``) belongs to a run whose process is gone."""
    pid_part = name[len(prefix) :].split("-", 1)[0]
    return pid_part.isdigit() and not _pid_alive(int(pid_part))


def remove_stale() -> list[str]:
    """Remove what runs whose process is gone left behind: namespaces (with the processes
    still running in them, coturn included) and work directories. Returns the namespaces."""
    for workdir in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*"):
        if _owner_gone(workdir.name, _WORKDIR_PREFIX):
            shutil.rmtree(workdir, ignore_errors=True)
    stale = []
    for name in _namespaces():
        if not name.startswith(PREFIX):
            continue
        if not _owner_gone(name, PREFIX):
            continue  # a run still going (possibly a parallel test session): not ours to touch
        _remove_namespace(name)
        stale.append(name)
    return stale


def nat_rules(nat: NatType, host_address: str) -> list[list[str]]:
    """iptables argv tails (after ``iptables``) for a router of type ``nat``.

    The router has ``wan`` (public) and ``lan`` (private, one host at ``host_address``).
    RFC 4787 terms: mapping (how the public port is chosen) and filtering (which inbound
    packets reach the host). docs/nat-testing.md explains each rule.
    - port-restricted: MASQUERADE. Linux conntrack keeps the source port when the resulting
      tuple is free, so one socket gets the same public port towards every destination
      (endpoint-independent mapping, section 4.1); inbound packets pass only as replies to a
      conntrack entry, i.e. from an address and port the host has sent to (address-and-port-
      dependent filtering, section 5).
    - symmetric: MASQUERADE --random-fully, a fresh random port per conntrack entry, i.e. per
      destination address and port (address-and-port-dependent mapping), same filtering.
    - full-cone: the port-restricted rules plus DNAT of every new inbound UDP packet and TCP
      connection to the host with the port unchanged; as the mapping keeps the host's port,
      a packet from any endpoint to the mapped port reaches the socket (endpoint-independent
      filtering, RFC 4787 §5; RFC 5382 §4.3 for TCP). The rule stands for a mapping that
      already exists (the host's STUN binding, or its keepalives from that port), so the
      host's TCP listener is reachable at the router's address, as a UDP socket is.
    - restricted: the full-cone rules, but the DNATed packets are only forwarded when their
      source address is in the ``recent`` list that every outbound packet adds its destination
      address to (address-dependent filtering).
    Every router drops all other new inbound packets, in INPUT too: a packet to the router's
    own address that is accepted there leaves a conntrack entry that would later force the
    host's outbound mapping onto another port and break the hole punch.
    """
    rules: list[list[str]] = [
        # Unsolicited packets to the router itself: drop before conntrack confirms an entry.
        ["-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
         "-j", "ACCEPT"],
        ["-A", "INPUT", "-i", "wan", "-j", "DROP"],
        ["-A", "FORWARD", "-i", "wan", "-o", "lan", "-m", "conntrack", "--ctstate",
         "ESTABLISHED,RELATED", "-j", "ACCEPT"],
    ]  # fmt: skip
    if nat == "full-cone":
        for proto in ("udp", "tcp"):
            rules.append(
                ["-A", "FORWARD", "-i", "wan", "-o", "lan", "-p", proto, "-m", "conntrack",
                 "--ctstate", "DNAT", "-j", "ACCEPT"]
            )  # fmt: skip
    elif nat == "restricted":
        rules.append(
            ["-A", "FORWARD", "-i", "wan", "-o", "lan", "-p", "udp", "-m", "conntrack",
             "--ctstate", "DNAT", "-m", "recent", "--name", "sent_to", "--rsource", "--rcheck",
             "-j", "ACCEPT"]
        )  # fmt: skip
    rules.append(["-A", "FORWARD", "-i", "wan", "-j", "DROP"])
    if nat == "restricted":
        # No target: remember the destination address, then fall through to ACCEPT.
        rules.append(
            ["-A", "FORWARD", "-i", "lan", "-o", "wan", "-m", "recent", "--name", "sent_to",
             "--rdest", "--set"]
        )  # fmt: skip
    rules.append(["-A", "FORWARD", "-i", "lan", "-o", "wan", "-j", "ACCEPT"])
    masquerade = ["-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"]
    if nat == "symmetric":
        masquerade.append("--random-fully")
    rules.append(masquerade)
    for proto in {"full-cone": ("udp", "tcp"), "restricted": ("udp",)}.get(nat, ()):
        rules.append(
            ["-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p", proto, "-j", "DNAT",
             "--to-destination", host_address]
        )  # fmt: skip
    return rules


@dataclass(frozen=True)
class Host:
    """One end host: its namespace, its own address and the address the internet sees."""

    name: str
    nat: NatType
    namespace: str
    address: str
    public_address: str
    router: str | None


@dataclass
class Topology:
    """A built topology; ``teardown()`` removes everything it started and created."""

    prefix: str
    internet: str
    workdir: Path
    hosts: dict[str, Host] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    turn: subprocess.Popen[bytes] | None = None

    @property
    def turn_log(self) -> Path:
        return self.workdir / "turnserver.log"

    def host(self, nat: NatType, index: int) -> Host:
        return self.hosts[f"{nat}-{index}"]

    def exec_argv(self, host: Host, argv: list[str]) -> list[str]:
        return ns_argv(host.namespace, argv)

    def teardown(self) -> None:
        """Stop coturn, delete every namespace of this run and the work directory."""
        if self.turn is not None:
            self.turn.terminate()
            try:
                self.turn.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.turn.kill()
                self.turn.wait(timeout=5)
            self.turn = None
        for namespace in reversed(self.namespaces):
            _remove_namespace(namespace)
        self.namespaces.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # building -------------------------------------------------------------------------

    def _add_namespace(self, name: str, *, forwarding: bool) -> str:
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        ns_run(name, "ip", "link", "set", "lo", "up")
        # IPv6 is not part of the matrix; without it no link-local chatter crosses the NATs.
        ns_run(name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=False)
        if forwarding:
            ns_run(name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        return name

    def _link(self, a: str, a_if: str, a_cidr: str, b: str, b_if: str, b_cidr: str) -> None:
        # Both ends are created inside namespaces: nothing appears in the root namespace.
        run(["ip", "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if,
             "netns", b])  # fmt: skip
        for ns, ifname, cidr in ((a, a_if, a_cidr), (b, b_if, b_cidr)):
            run(["ip", "-n", ns, "addr", "add", cidr, "dev", ifname])
            run(["ip", "-n", ns, "link", "set", ifname, "up"])

    def _add_host(self, nat: NatType, index: int, subnet: int) -> None:
        short = f"{_SHORT[nat]}{index}"
        up = f"p{subnet}"
        wan = f"198.18.{subnet}.2"
        if nat == "none":
            ns = self._add_namespace(f"{self.prefix}h-{short}", forwarding=False)
            self._link(self.internet, up, f"198.18.{subnet}.1/24", ns, "eth0", f"{wan}/24")
            run(["ip", "-n", ns, "route", "add", "default", "via", f"198.18.{subnet}.1"])
            self.hosts[f"{nat}-{index}"] = Host(f"{nat}-{index}", nat, ns, wan, wan, None)
            return
        router = self._add_namespace(f"{self.prefix}r-{short}", forwarding=True)
        ns = self._add_namespace(f"{self.prefix}h-{short}", forwarding=False)
        lan_gw, host_ip = f"10.200.{subnet}.1", f"10.200.{subnet}.2"
        self._link(self.internet, up, f"198.18.{subnet}.1/24", router, "wan", f"{wan}/24")
        self._link(router, "lan", f"{lan_gw}/24", ns, "eth0", f"{host_ip}/24")
        run(["ip", "-n", router, "route", "add", "default", "via", f"198.18.{subnet}.1"])
        run(["ip", "-n", ns, "route", "add", "default", "via", lan_gw])
        for rule in nat_rules(nat, host_ip):
            ns_run(router, "iptables", *rule)
        self.hosts[f"{nat}-{index}"] = Host(f"{nat}-{index}", nat, ns, host_ip, wan, router)

    def _start_turn(self) -> None:
        conf = self.workdir / "turnserver.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listening-ip={TURN_ADDRESS}",
                    f"relay-ip={TURN_ADDRESS}",
                    f"listening-port={TURN_PORT}",
                    "min-port=49152",
                    "max-port=65535",
                    f"realm={TURN_REALM}",
                    "lt-cred-mech",
                    f"user={TURN_USER}:{TURN_PASSWORD}",
                    "fingerprint",
                    "no-tls",
                    "no-dtls",
                    "no-tcp-relay",
                    "no-multicast-peers",
                    # Peers live in the benchmarking range; allow it whatever the defaults.
                    "allowed-peer-ip=198.18.0.0-198.19.255.255",
                    f"userdb={self.workdir / 'turndb'}",
                    f"pidfile={self.workdir / 'turnserver.pid'}",
                    f"log-file={self.turn_log}",
                    "simple-log",
                    "no-software-attribute",
                ]
            )
            + "\n"
        )
        with open(self.workdir / "turnserver.out", "wb") as out:
            self.turn = subprocess.Popen(
                ns_argv(self.internet, ["turnserver", "-c", str(conf), "--no-cli"]),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.turn.poll() is not None:
                raise TopologyError(
                    f"turnserver exited {self.turn.returncode}: {self._turn_tail()}"
                )
            listening = ns_run(self.internet, "ss", "-Hlun", f"sport = :{TURN_PORT}").stdout
            if TURN_ADDRESS in listening:
                return
            time.sleep(0.05)
        raise TopologyError(f"turnserver did not listen within 10 s: {self._turn_tail()}")

    def _turn_tail(self) -> str:
        texts = []
        for path in (self.workdir / "turnserver.out", self.turn_log):
            with contextlib.suppress(OSError):
                texts.append(path.read_text(errors="replace")[-2000:])
        return "\n".join(texts)


def build(hosts_per_type: int = 2) -> Topology:
    """Build the internet, coturn, and ``hosts_per_type`` hosts of every NAT type.

    Each NATed host gets its own router, so two hosts of one type never share a NAT (which
    would need hairpinning, a different behaviour). On any failure what was built is removed.
    """
    prefix = f"{PREFIX}{os.getpid()}-"
    topo = Topology(
        prefix=prefix,
        internet=f"{prefix}inet",
        workdir=Path(tempfile.mkdtemp(prefix=f"{_WORKDIR_PREFIX}{os.getpid()}-")),
    )
    try:
        topo._add_namespace(topo.internet, forwarding=True)
        for address in (TURN_ADDRESS, *PROBE_ADDRESSES):
            run(["ip", "-n", topo.internet, "addr", "add", f"{address}/32", "dev", "lo"])
        subnet = 0
        for nat in NAT_TYPES:
            for index in range(1, hosts_per_type + 1):
                subnet += 1
                topo._add_host(nat, index, subnet)
        topo._start_turn()
    except BaseException:
        topo.teardown()
        raise
    return topo
