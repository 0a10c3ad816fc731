"""The Petals baseline: servers pick block spans for swarm throughput; a pass takes the
fastest chain of spans.

Covers: Petals' block selection and its client's route, as a pure planner
(:func:`petals_swarm`, :func:`plan_petals`) and the maths they use
(:func:`span_throughputs`, :func:`leximin_key`, :func:`span_options`, :func:`choose_span`,
:func:`fastest_chain`). Does not cover: what a layer (a "block") is and which nodes Petals
can drive (see :mod:`sedma.compute.partition.layers`), the attention cache a server reserves
per block (see :mod:`sedma.compute.partition.petals_cache`), the exo baseline (see
:mod:`sedma.compute.partition.exo`) or running a plan (see :mod:`sedma.control.executor`).

Sources: Borzunov et al., "Petals: Collaborative Inference and Fine-tuning of Large
Models", ACL 2023 (system demonstrations); Borzunov et al., "Distributed Inference and
Fine-tuning of Large Language Models Over The Internet", NeurIPS 2023 (the load balancing
and routing of section 3); the project's ``src/petals/server/block_selection.py``,
``server/throughput.py``, ``server/server.py`` and ``client/routing/sequence_manager.py``.

The rules, in our words:

1. A server holds as many consecutive blocks as fit its memory with each block's attention
   cache reserved beside it (``Server._choose_num_blocks``: ``floor(memory / (block_size +
   cache_bytes_per_block))``): here each block reserves its per-pass bytes (KV cache,
   activations) for the passes in flight Petals' default ``attn_cache_tokens`` admits
   (:func:`~sedma.compute.partition.petals_cache.petals_passes`: 2 for TinyLlama-1.1B, 1 for
   LLaMA-7B and for workloads that are no decoder). A server too small for one block so
   reserved holds fewer passes' cache (its operator lowers ``--attn_cache_tokens``: Petals
   refuses to start a server with no block), and a swarm that cannot cover the model so
   reserves one pass fewer everywhere, down to one. A server advertises one throughput:
   its per-block rate divided by ``(n + 1) / 2``, the blocks an average request uses when
   it may enter anywhere in the server's ``n`` blocks.
2. A block's throughput is the sum of the throughputs of the servers holding it; the
   swarm's is the smallest over blocks. A joining server takes the span that lifts the
   weakest blocks most. Servers join in order of decreasing compute rate.
3. Rebalancing: each server in turn takes itself out and picks again under the same rule,
   staying put on a tie; rounds repeat until no server moves. (Petals moves only when the
   swarm gains more than a quality threshold, because a real move reloads weights; a plan
   has no reload cost, so a competent user lets it converge.)
4. A client routes a pass along the chain of spans with the least total compute time,
   a shortest path over block boundaries where a server's edge costs its per-block time
   (Petals' min-latency routing, a Dijkstra search). Petals also charges each hop the
   client's RTT to the server and a fixed serialisation delay; the views carry no links
   and the backend charges every byte moved, so here a hop costs nothing and fewer hops
   only break ties.

Generalisations, to Petals' advantage: blocks of unequal size (ResNet's stages) have their
own FLOPs, so a server's throughput at block ``b`` is ``rate / (F_b (n + 1) / 2)`` in passes
per second and spans are capped by the bytes of the blocks they hold, not a fixed count;
"lifts the weakest blocks most" is the leximin order of the swarm's block throughputs after
the join, which for equal blocks picks what Petals' sorted-window rule picks. Views carry
no link rates, so the advertised throughput omits Petals' network cap.

Replicas held but not on the chain are memory the servers really hold: :class:`Swarm`
reports their weight bytes (``standby_bytes``) for memory efficiency to charge; the
:class:`~sedma.compute.plan.Plan` holds only the chain's tiles, one per product.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.layers import (
    Layer,
    layer_flops,
    layer_plan,
    model_layers,
    overfilled,
    pipeline_nodes,
    runs_layer,
    usable_bytes,
)
from sedma.compute.partition.petals_cache import petals_passes, reserved_block_bytes
from sedma.compute.plan import NodeView, Plan, held_bytes
from sedma.compute.workload import MatmulOp
from sedma.errors import PlanError

__all__ = [
    "Span",
    "Swarm",
    "choose_span",
    "fastest_chain",
    "leximin_key",
    "petals_swarm",
    "plan_petals",
    "span_options",
    "span_throughputs",
]

_log = logging.getLogger(__name__)

_MAX_ROUNDS = 100  # rebalancing always ends (each move raises the leximin key); a backstop
_DIGITS = 10  # significant digits compared: float noise must not look like a gain
_NOTED = 12  # spans a plan's note lists (a fleet may have thousands)


@dataclass(frozen=True)
class Span:
    """Blocks ``start:stop`` on server ``server``."""

    server: str
    start: int
    stop: int


@dataclass(frozen=True)
class Swarm:
    """The swarm Petals forms and the plan of one pass along its fastest chain."""

    plan: Plan
    spans: tuple[Span, ...]  # every server's held span, in join order
    chain: tuple[Span, ...]  # the route of a pass, in model order
    block_throughput: tuple[float, ...]  # passes/s the swarm serves at each block
    standby_bytes: Mapping[str, int]  # weight bytes held in spans the chain does not use
    cache_passes: int = 1  # passes in flight a held block reserves (a small server: fewer)

    @property
    def throughput(self) -> float:
        """The swarm's throughput: its weakest block's."""
        return min(self.block_throughput)

    @property
    def held_bytes(self) -> int:
        """Everything the swarm holds for the job: the chain's footprint and the replicas
        off it. The denominator of memory efficiency for Petals
        (:func:`sedma.metrics.memory_efficiency`), not ``held_bytes(plan)`` alone."""
        return held_bytes(self.plan, {}) + sum(self.standby_bytes.values())


def span_throughputs(
    rate_gflops: float, flops: Sequence[int], start: int, stop: int
) -> list[float]:
    """A server's advertised throughput at each block of its span ``start:stop``.

    Petals (``server/throughput.py``) divides a server's per-block rate by the average
    blocks a request uses, ``(n + 1) / 2`` for ``n`` held blocks; per block ``b``:
    ``T_b = rate * 1e9 / (F_b * (n + 1) / 2)`` passes per second.
    """
    per_request = (stop - start + 1) / 2.0
    return [rate_gflops * 1e9 / (flops[b] * per_request) for b in range(start, stop)]


def leximin_key(values: Sequence[float]) -> tuple[float, ...]:
    """Block throughputs sorted ascending, to ``_DIGITS`` significant digits: the larger
    key (compared as tuples) is the swarm with the stronger weakest block, then the
    stronger second-weakest, and so on."""
    return tuple(float(f"{v:.{_DIGITS}g}") for v in sorted(values))


def span_options(
    view: NodeView,
    ops: Sequence[MatmulOp],
    layers: Sequence[Layer],
    reserve: float,
    passes: int = 1,
) -> list[tuple[int, int]]:
    """The spans a server may hold: from each block it may run, the longest run of
    consecutive blocks it may run (error budgets) whose bytes, each block's
    :func:`~sedma.compute.partition.petals_cache.reserved_block_bytes` for ``passes``
    passes in flight, fit its usable memory, less those inside another such span. A Petals
    server holds as many blocks as fit beside their cache, so with equal blocks these are
    exactly Petals' windows of ``num_blocks``."""
    have = usable_bytes(view, reserve)
    options: list[tuple[int, int]] = []
    for start in range(len(layers)):
        stop, used = start, 0
        while stop < len(layers) and runs_layer(view, ops, layers[stop]):
            need = reserved_block_bytes(ops, layers[stop], passes)
            if used + need > have:
                break
            used += need
            stop += 1
        if stop > start and not (options and options[-1][1] >= stop):
            options.append((start, stop))  # else inside the previous one: hold that instead
    return options


def choose_span(
    base: Sequence[float],
    options: Sequence[tuple[int, int]],
    rate_gflops: float,
    flops: Sequence[int],
    current: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """The option whose :func:`span_throughputs` added to ``base`` gives the largest
    :func:`leximin_key`; ties go to ``current``, then to the earliest start."""
    if not options:
        raise PlanError("choose_span: options = []; the server must be able to hold a block")

    def key(opt: tuple[int, int]) -> tuple[float, ...]:
        after = list(base)
        for b, t in zip(range(*opt), span_throughputs(rate_gflops, flops, *opt), strict=True):
            after[b] += t
        return leximin_key(after)

    best = current if current in options else None
    best_key = key(best) if best is not None else None
    for opt in options:
        k = key(opt)
        if best_key is None or k > best_key:
            best, best_key = opt, k
    assert best is not None
    return best


def fastest_chain(
    spans: Sequence[Span], flops: Sequence[int], rates_gflops: Mapping[str, float]
) -> tuple[Span, ...]:
    """The chain of span pieces through blocks ``0 .. B-1`` with the least compute time.

    A shortest path over block boundaries ``0 .. B``: a server holding ``s:e`` gives an
    edge ``i -> j`` for ``s <= i < j <= e`` of cost ``sum_{b=i}^{j-1} F_b / (rate * 1e9)``
    (Petals' per-block time). Ties go to fewer hops, then to the earlier span; consecutive
    pieces on one server are returned as one. Raises
    :class:`PlanError` if some block is held by no span.
    """
    n = len(flops)
    for b in range(n):
        if not any(sp.start <= b < sp.stop for sp in spans):
            raise PlanError(f"no server holds block {b}: the swarm does not cover the model")
    best: list[tuple[float, int] | None] = [None] * (n + 1)
    back: list[tuple[int, Span] | None] = [None] * (n + 1)
    best[0] = (0.0, 0)
    for i in range(n):
        here = best[i]
        assert here is not None  # every block is held, so every boundary is reached
        for sp in spans:
            if not sp.start <= i < sp.stop:
                continue
            t = here[0]
            for j in range(i + 1, sp.stop + 1):
                t += flops[j - 1] / (rates_gflops[sp.server] * 1e9)
                cand = (float(f"{t:.{_DIGITS + 2}g}"), here[1] + 1)
                old = best[j]
                if old is None or cand < old:
                    best[j], back[j] = cand, (i, Span(sp.server, i, j))
    pieces: list[Span] = []
    j = n
    while j > 0:
        step = back[j]
        assert step is not None
        pieces.append(step[1])
        j = step[0]
    merged: list[Span] = []
    for p in reversed(pieces):  # equal times by different float sums may split a server
        if merged and merged[-1].server == p.server:
            merged[-1] = Span(p.server, merged[-1].start, p.stop)
        else:
            merged.append(p)
    return tuple(merged)


def petals_swarm(ctx: PartitionContext) -> Swarm:
    """Petals' swarm on ``ctx``'s GPUs and CPUs and one pass along its fastest chain, each
    held block reserving the passes in flight Petals' default attention cache admits
    (:func:`~sedma.compute.partition.petals_cache.petals_passes`), or fewer where the swarm
    cannot cover the model so (rule 1 of the module docstring).

    Raises :class:`PlanError` naming the first block no server can hold (error budgets,
    memory) or that the swarm leaves uncovered, with one pass reserved.
    """
    passes = petals_passes(ctx.workload)
    while True:
        try:
            return _swarm(ctx, passes)
        except PlanError as e:
            if passes == 1:
                raise
            _log.info("petals: %s with %d passes' cache; trying %d", e, passes, passes - 1)
            passes -= 1


def _swarm(ctx: PartitionContext, passes: int) -> Swarm:
    """:func:`petals_swarm` with each held block reserving ``passes`` passes in flight
    (a server that cannot hold one block so reserves fewer)."""
    ops = ctx.workload.ops
    layers = model_layers(ctx.workload)
    flops = [layer_flops(ops, layer) for layer in layers]
    reserve = ctx.settings.memory_reserve
    servers = sorted(pipeline_nodes(ctx.nodes), key=lambda v: (-v.rate_gflops, v.name))
    options = {v.name: _server_options(v, ops, layers, reserve, passes) for v in servers}
    servers = [v for v in servers if options[v.name]]
    _check_holdable(ctx, layers, options, passes)
    held, rounds, moves = _select_spans(servers, options, flops)
    spans = tuple(Span(v.name, *held[v.name]) for v in servers)
    block_tp = _block_throughputs(servers, held, flops)
    if min(block_tp) <= 0.0:
        gap = block_tp.index(min(block_tp))
        raise PlanError(
            f"petals: no server holds block {gap} (ops {ops[layers[gap][0]].name!r}..): "
            f"{len(servers)} servers' spans leave it uncovered; add memory or nodes"
        )
    rates = {v.name: v.rate_gflops for v in ctx.nodes}
    chain = fastest_chain(spans, flops, rates)
    owners = [p.server for p in chain for _ in range(p.start, p.stop)]
    standby = _standby_bytes(ops, layers, spans, chain)
    notes = (
        f"petals swarm: {len(servers)} servers, spans "
        + ", ".join(f"{s.server} {s.start}:{s.stop}" for s in spans[:_NOTED])
        + (f", {len(spans) - _NOTED} more" if len(spans) > _NOTED else "")
        + f"; {moves} rebalancing moves in {rounds} rounds; each block's cache holds "
        + f"{passes} pass{'' if passes == 1 else 'es'} in flight",
        "petals chain: " + " -> ".join(f"{p.server} {p.start}:{p.stop}" for p in chain),
        f"petals replicas held off the chain: {sum(standby.values())} weight bytes",
    )
    plan = layer_plan(ctx.nodes, ctx.workload, layers, owners, "petals", notes)
    assert not overfilled(plan, {v.name: v for v in ctx.nodes}, reserve)
    _log.info("%s; %s", notes[0], notes[1])
    return Swarm(plan, spans, chain, tuple(block_tp), standby, passes)


def plan_petals(ctx: PartitionContext) -> Plan:
    """The plan of one pass along Petals' fastest chain (:func:`petals_swarm`)."""
    return petals_swarm(ctx).plan


def _server_options(
    view: NodeView, ops: Sequence[MatmulOp], layers: Sequence[Layer], reserve: float, passes: int
) -> list[tuple[int, int]]:
    """:func:`span_options` with the most passes' cache, at most ``passes``, that leave the
    server at least one block (none where it cannot hold one block with one pass)."""
    for p in range(passes, 0, -1):
        options = span_options(view, ops, layers, reserve, p)
        if options:
            return options
    return []


def _block_throughputs(
    servers: Sequence[NodeView], held: Mapping[str, tuple[int, int]], flops: Sequence[int]
) -> list[float]:
    """Each block's throughput: the sum over the servers holding it, in server order."""
    out = [0.0] * len(flops)
    for v in servers:
        if v.name in held:
            _add(out, v.rate_gflops, flops, held[v.name], 1.0)
    return out


def _add(
    total: list[float], rate: float, flops: Sequence[int], span: tuple[int, int], sign: float
) -> None:
    for b, t in zip(range(*span), span_throughputs(rate, flops, *span), strict=True):
        total[b] += sign * t


def _select_spans(
    servers: Sequence[NodeView],
    options: Mapping[str, list[tuple[int, int]]],
    flops: Sequence[int],
) -> tuple[dict[str, tuple[int, int]], int, int]:
    """Joins in the given order, then rebalancing rounds until no server moves (at most
    ``_MAX_ROUNDS``). Returns each server's span, the rounds and the moves. The block totals
    are kept up to date by subtracting and adding a server's share (O(blocks) per server,
    not O(servers x blocks)); :func:`leximin_key` compares them to ``_DIGITS`` digits, so
    the rounding this accumulates never looks like a gain."""
    held: dict[str, tuple[int, int]] = {}
    total = [0.0] * len(flops)
    for v in servers:  # joins, fastest first
        held[v.name] = choose_span(total, options[v.name], v.rate_gflops, flops)
        _add(total, v.rate_gflops, flops, held[v.name], 1.0)
    rounds, moves, moved = 0, 0, True
    while moved and rounds < _MAX_ROUNDS:
        rounds += 1
        moved = False
        for v in servers:
            _add(total, v.rate_gflops, flops, held[v.name], -1.0)
            pick = choose_span(total, options[v.name], v.rate_gflops, flops, held[v.name])
            if pick != held[v.name]:
                held[v.name], moved, moves = pick, True, moves + 1
            _add(total, v.rate_gflops, flops, held[v.name], 1.0)
    return held, rounds, moves


def _standby_bytes(
    ops: Sequence[MatmulOp],
    layers: Sequence[Layer],
    spans: Sequence[Span],
    chain: Sequence[Span],
) -> dict[str, int]:
    """Per server, the weights of held blocks the chain runs elsewhere. Only stationary
    weights: a per-input operand (a KV cache) lives only where its request runs."""
    used = {(p.server, b) for p in chain for b in range(p.start, p.stop)}
    out: dict[str, int] = {}
    for s in spans:
        out[s.server] = sum(
            ops[i].weight_bytes
            for b in range(s.start, s.stop)
            if (s.server, b) not in used
            for i in range(*layers[b])
            if ops[i].weight_static
        )
    return out


def _check_holdable(
    ctx: PartitionContext,
    layers: Sequence[Layer],
    options: Mapping[str, list[tuple[int, int]]],
    passes: int,
) -> None:
    """Raise PlanError for the first block that no server can hold at all with ``passes``
    passes' cache, saying why."""
    ops = ctx.workload.ops
    covered = {b for opts in options.values() for a, e in opts for b in range(a, e)}
    for b, layer in enumerate(layers):
        if b in covered:
            continue
        able = [v for v in pipeline_nodes(ctx.nodes) if runs_layer(v, ops, layer)]
        name = ops[layer[0]].name
        if not able:
            raise PlanError(
                f"petals: block {b} (from op {name!r}) can run on no GPU or CPU: none meets "
                "its error budgets (max_rel_error)"
            )
        have = max(usable_bytes(v, ctx.settings.memory_reserve) for v in able)
        raise PlanError(
            f"petals: block {b} (from op {name!r}) needs "
            f"{reserved_block_bytes(ops, layer, passes)} bytes with its cache for {passes} "
            f"pass{'' if passes == 1 else 'es'} in flight; "
            f"the most usable on a node that may run it is {have}"
        )
