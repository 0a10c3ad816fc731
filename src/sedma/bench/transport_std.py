"""The standard protocols measured like sedma's transport: TLS 1.3 on TCP, QUIC over ICE.

Covers: :func:`bench_transport_std`, which runs the benchmark of :mod:`sedma.bench.transport`
(the same pipelined small messages, echo round trips and 64 MiB float32 tensors, the same
message codec, the same raw-socket copy in alternate rounds, the same digest check) over

- ``tls``: TLS 1.3 with mutual authentication from the standard library's :mod:`ssl`
  (OpenSSL) over loopback TCP; each side presents a self-signed Ed25519 certificate and
  trusts exactly the other's (the peer id is the key, as in sedma's handshake), messages are
  length-prefixed on an :mod:`asyncio` stream;
- ``quic``: QUIC (aioquic: TLS 1.3 inside, its own loss recovery and congestion control, RFC
  9000/9001/9002) driven sans-IO over the UDP pair that ICE (aioice, host candidates on
  loopback) nominated, the path sedma's own datagram layer would carry; one bidirectional
  stream, messages length-prefixed on it.

Does not cover: sedma's own stack (see :mod:`sedma.bench.transport`) or the choice between them
(docs/communication.md, "Standard protocols"). The receiving end runs in a child process
(``spawn``), as in the sedma benchmark, so both ends have an interpreter of their own.

aioquic 1.7 has no supported way for a server to ask for the client's certificate (its TLS
code marks the request "for test purposes only"), so the QUIC run authenticates the server
only; after the handshake that makes no difference to the figures measured here.

Benchmarks may read ``time.perf_counter`` directly: they measure this machine, not a policy.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

import numpy as np
from aioquic._buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_header
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from sedma.bench.std_endpoints import TIMEOUT_S, QuicEndpoint, TlsEndpoint
from sedma.bench.transport import (
    TARGET_LARGE_VS_RAW,
    Sizes,
    measure_endpoint,
    raw_sink,
    round_figures,
    run_against_receiver,
    serve_endpoint,
)
from sedma.comm.net.ice import IceAgent, IceConfig
from sedma.errors import SedmaError

__all__ = [
    "ADOPT_SMALL_MSGS_PER_S",
    "STD_PROTOCOLS",
    "StdProtocol",
    "bench_transport_std",
    "identity",
    "tls_accept",
    "tls_connect",
    "tls_context",
]

logger = logging.getLogger(__name__)

StdProtocol = Literal["tls", "quic"]
STD_PROTOCOLS: tuple[StdProtocol, ...] = ("tls", "quic")
ADOPT_SMALL_MSGS_PER_S = 20_000  # issue 15's bar for adopting a standard protocol
_TX, _RX = "bench-tx", "bench-rx"
_QUIC_WINDOW = 16 << 20  # QUIC flow-control credit (aioquic's default, 1 MiB, caps a stream)


def identity(name: str, key: Ed25519PrivateKey, folder: Path) -> tuple[str, str, bytes]:
    """A self-signed Ed25519 certificate for ``name``: (cert file, key file, cert PEM)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, None)
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file), pem


def tls_context(server: bool, own: tuple[str, str, bytes], other_pem: bytes) -> ssl.SSLContext:
    """TLS 1.3 only, our certificate presented, exactly the other's trusted (both ways)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(own[0], own[1])
    ctx.load_verify_locations(cadata=other_pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _quic_config(client: bool, own: tuple[str, str, bytes], other_pem: bytes) -> QuicConfiguration:
    cfg = QuicConfiguration(
        is_client=client,
        alpn_protocols=["sedma-bench"],
        max_data=_QUIC_WINDOW,
        max_stream_data=_QUIC_WINDOW,
        idle_timeout=TIMEOUT_S,
        server_name=_RX if client else None,
    )
    cfg.load_cert_chain(own[0], own[1])
    if client:
        cfg.load_verify_locations(cadata=other_pem)
    return cfg


def _server_factory(cfg: QuicConfiguration) -> Callable[[bytes], QuicConnection]:
    def make(first: bytes) -> QuicConnection:
        header = pull_quic_header(Buffer(data=first), host_cid_length=cfg.connection_id_length)
        return QuicConnection(
            configuration=cfg, original_destination_connection_id=header.destination_cid
        )

    return make


def tls_accept(server: socket.socket, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    """Accept one connection and run the server side of the TLS handshake (blocking)."""
    server.settimeout(60.0)
    raw, _ = server.accept()
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_side=True)


def tls_connect(address: tuple[str, int], ctx: ssl.SSLContext) -> ssl.SSLSocket:
    """Connect and run the client side of the TLS handshake (blocking)."""
    raw = socket.create_connection(address, timeout=60.0)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname=_RX)


def _ice_agent(controlling: bool) -> IceAgent:
    config = IceConfig(host_addresses=("127.0.0.1",), timeout_s=30.0)
    return IceAgent(config, controlling=controlling)


def _receiver(protocol: StdProtocol, seed: int, folder: str, conn: Connection) -> None:
    """The child process: the receiving end of ``protocol`` and a raw socket sink. It makes
    both identities (in ``folder``) before it says it is ready; the sender reads its own."""

    async def main() -> None:
        keys = random.Random(seed)
        path = Path(folder)
        rx_id = identity(_RX, Ed25519PrivateKey.from_private_bytes(keys.randbytes(32)), path)
        tx_id = identity(_TX, Ed25519PrivateKey.from_private_bytes(keys.randbytes(32)), path)
        with socket.create_server(("127.0.0.1", 0)) as raw_server:
            threading.Thread(target=raw_sink, args=(raw_server,), daemon=True).start()
            raw_address = raw_server.getsockname()[:2]
            if protocol == "tls":
                ctx = tls_context(True, rx_id, tx_id[2])
                with socket.create_server(("127.0.0.1", 0)) as server:
                    conn.send((server.getsockname()[:2], raw_address))
                    sock = await asyncio.to_thread(tls_accept, server, ctx)
                end = TlsEndpoint(sock, _TX)
                try:
                    await serve_endpoint(end)
                    await asyncio.sleep(0.2)  # the last reply on its way
                finally:
                    end.close()
                return
            agent = _ice_agent(False)
            await agent.gather()
            conn.send((agent.description(), raw_address))
            remote = await asyncio.to_thread(conn.recv)
            await agent.connect(remote)
            cfg = _quic_config(False, rx_id, tx_id[2])
            qend = QuicEndpoint(agent.conn, None, _server_factory(cfg), _TX)
            try:
                await serve_endpoint(qend)
                await asyncio.sleep(0.2)  # the last reply's acknowledgement
            finally:
                await qend.close()
                await agent.close()

    asyncio.run(main())


async def _run_sender(
    protocol: StdProtocol,
    folder: str,
    conn: Connection,
    tensor: np.ndarray[Any, Any],
    sizes: Sizes,
) -> dict[str, Any]:
    path = Path(folder)
    tx_id = (str(path / f"{_TX}.crt"), str(path / f"{_TX}.key"), (path / f"{_TX}.crt").read_bytes())
    rx_pem = (path / f"{_RX}.crt").read_bytes()
    if protocol == "tls":
        address, raw_address = await asyncio.to_thread(conn.recv)
        sock = await asyncio.to_thread(tls_connect, address, tls_context(False, tx_id, rx_pem))
        cipher = sock.cipher()
        detail: dict[str, object] = {"tls_version": sock.version(), "cipher": cipher and cipher[0]}
        end = TlsEndpoint(sock, _RX)
        try:
            got = await measure_endpoint(end, raw_address, tensor, sizes)
            await end.send(_RX, {"op": "stop"})
            await asyncio.sleep(0.2)
        finally:
            end.close()
        return {**got, **detail}
    remote, raw_address = await asyncio.to_thread(conn.recv)
    agent = _ice_agent(True)
    await agent.gather()
    conn.send(agent.description())
    await agent.connect(remote)
    cfg = _quic_config(True, tx_id, rx_pem)
    quic = QuicConnection(configuration=cfg)
    qend = QuicEndpoint(agent.conn, quic, _server_factory(cfg), _RX)
    try:
        await asyncio.wait_for(qend.handshake, 30.0)
        detail = {
            "ice_pair": agent.describe_pair(),
            "congestion_control": cfg.congestion_control_algorithm,
            "max_datagram_bytes": cfg.max_datagram_size,
        }
        got = await measure_endpoint(qend, raw_address, tensor, sizes)
        await qend.send(_RX, {"op": "stop"})
        await asyncio.sleep(0.2)
    finally:
        await qend.close()
        await agent.close()
    return {**got, **detail}


def bench_transport_std(
    protocol: StdProtocol, seed: int = 0, sizes: Sizes | None = None
) -> dict[str, object]:
    """Measure ``protocol`` (``"tls"`` or ``"quic"``) as :func:`~sedma.bench.transport.
    bench_transport` measures sedma's transport, with the same ``sizes``; returns the same
    keys, plus ``protocol``, what was negotiated, and ``meets_adoption_bar`` (at least
    :data:`ADOPT_SMALL_MSGS_PER_S` small messages/s and large tensors at
    :data:`~sedma.bench.transport.TARGET_LARGE_VS_RAW` of the raw socket, intact)."""
    if protocol not in STD_PROTOCOLS:
        raise SedmaError(f"protocol: got {protocol!r}; allowed: {', '.join(STD_PROTOCOLS)}")
    sizes = Sizes() if sizes is None else sizes
    tensor = sizes.tensor(seed)
    with tempfile.TemporaryDirectory(prefix="sedma-bench-") as folder:
        got = run_against_receiver(
            f"transport benchmark ({protocol})",
            _receiver,
            (protocol, seed, folder),
            lambda conn: _run_sender(protocol, folder, conn, tensor, sizes),
            TIMEOUT_S,
        )
    figures = round_figures(got, sizes, int(tensor.nbytes))
    small, ratio = float(figures["small_msgs_per_s"]), float(figures["large_vs_raw"])
    extra = {k: v for k, v in got.items() if k not in ("small", "rtt_s", "large", "raw", "intact")}
    result: dict[str, object] = {
        "protocol": protocol,
        "seed": seed,
        **extra,
        **figures,
        "adopt_small_msgs_per_s": ADOPT_SMALL_MSGS_PER_S,
        "adopt_large_vs_raw": TARGET_LARGE_VS_RAW,
        "meets_adoption_bar": bool(figures["large_intact"])
        and small >= ADOPT_SMALL_MSGS_PER_S
        and ratio >= TARGET_LARGE_VS_RAW,
    }
    logger.debug("transport benchmark (%s): %s", protocol, result)
    return result
