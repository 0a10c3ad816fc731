"""The attention cache a Petals server reserves per block, as our passes in flight (pure).

Covers: Petals' default attention-cache size (:func:`default_cache_tokens`), the passes in
flight such a cache admits (:func:`cache_passes`, and for a workload :func:`petals_passes`,
from the tokens one of its passes caches, :func:`cached_tokens_per_pass`) and the bytes a
server then needs per block it holds (:func:`reserved_block_bytes`). Does not cover: which
blocks a server holds (see :mod:`sedma.compute.partition.petals`), what a block is (see
:mod:`sedma.compute.partition.layers`) or the passes a plan keeps in flight when it runs
(see :func:`sedma.compute.plan.memory_in_flight`).

Source: the project's ``src/petals/server/server.py`` (bigscience-workshop/petals, read at
commit 22afba6). ``Server.__init__`` defaults ``attn_cache_tokens`` to 16,384 for models with
grouped-query attention (``num_key_value_groups > 1``) and to 4,096 otherwise, and sets::

    cache_bytes_per_block = 2 * hidden_size * attn_cache_tokens // num_key_value_groups
                            * dtype_bytes

(a K and a V vector per cached token); ``Server._choose_num_blocks`` then holds::

    num_blocks = floor((total_memory - autograd_memory) / (block_size + cache_bytes_per_block))

so every block a server holds comes with its share of the cache pool.

In our terms. ``hidden_size / num_key_value_groups`` is the ``kv_dim`` of
:class:`sedma.workloads.llama.Decoder` (``hidden x kv_heads / heads``), so Petals reserves
per block the K and V of ``attn_cache_tokens`` tokens. One of our decode passes
(:func:`sedma.workloads.llama.decode_step`) holds in each block the K and V of ``B``
sequences at ``T`` tokens, ``B x T`` tokens: its per-input weights (``weight_static=False``),
``2 x kv_dim x B x T`` values. Petals' cache therefore admits
``floor(attn_cache_tokens / (B x T))`` of our passes, at least one: a cache too small for one
pass makes Petals refuse a session through all of a server's blocks (``MemoryCache``:
``AllocationFailed``; its operator raises ``--attn_cache_tokens``, which is what the
baseline did before this rule). The pool is the server's, ``num_blocks`` blocks' worth, so a
pass through fewer of its blocks may use more of it: the passes in flight a plan runs are the
bench's to count (:func:`sedma.compute.plan.memory_in_flight`, the node's memory less the
plan's footprint), not this reservation's. TinyLlama-1.1B (grouped, 16,384 tokens) at 8
sequences of 1,024 tokens: 2 passes; LLaMA-7B (4,096 tokens): 1. A pass in flight also
needs its activations (the products' inputs and outputs, which Petals allocates beside its
cache pool; 7% of the cache for TinyLlama's block, 1% for LLaMA-7B's), so each reserved
pass counts the block's whole per-pass bytes, as :func:`sedma.compute.plan.per_pass_bytes`
counts what a pass in flight needs. The reservation is room, not data: memory efficiency
counts what the swarm holds for one pass
(:attr:`~sedma.compute.partition.petals.Swarm.held_bytes`), as it does for every system.

Left out, to Petals' advantage: ``autograd_memory`` (``2 GiB x hidden / 14336``, kept for
fine-tuning's backward pass; our workloads only infer), and the cache reservation for
workloads that are no packaged decoder (ResNet, BERT, a workload file): Petals serves
decoder LLMs only, and there the rule reserves one pass, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from sedma.compute.partition.layers import Layer, model_layers
from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import PlanError
from sedma.workloads.llama import DECODERS

__all__ = [
    "GROUPED_CACHE_TOKENS",
    "MULTI_HEAD_CACHE_TOKENS",
    "cache_passes",
    "cached_tokens_per_pass",
    "default_cache_tokens",
    "petals_passes",
    "reserved_block_bytes",
]

MULTI_HEAD_CACHE_TOKENS = 4096
"""Petals' default ``attn_cache_tokens`` without grouped-query attention (``server.py``)."""
GROUPED_CACHE_TOKENS = 16384
"""Petals' default ``attn_cache_tokens`` with grouped-query attention (``server.py``)."""


def default_cache_tokens(kv_groups: int) -> int:
    """Petals' default ``attn_cache_tokens``: :data:`GROUPED_CACHE_TOKENS` where query heads
    share key/value heads (``num_key_value_groups = heads / kv_heads > 1``), else
    :data:`MULTI_HEAD_CACHE_TOKENS`. Raises :class:`PlanError` for ``kv_groups < 1``."""
    if kv_groups < 1:
        raise PlanError(f"default_cache_tokens: kv_groups = {kv_groups!r}; must be >= 1")
    return GROUPED_CACHE_TOKENS if kv_groups > 1 else MULTI_HEAD_CACHE_TOKENS


def cache_passes(cache_tokens: int, tokens_per_pass: int) -> int:
    """Passes in flight a per-block cache of ``cache_tokens`` tokens admits when one pass
    caches ``tokens_per_pass`` tokens per block: ``max(1, floor(cache_tokens /
    tokens_per_pass))``. Raises :class:`PlanError` unless both are >= 1."""
    if cache_tokens < 1 or tokens_per_pass < 1:
        raise PlanError(
            f"cache_passes: cache_tokens = {cache_tokens!r}, tokens_per_pass = "
            f"{tokens_per_pass!r}; both must be >= 1"
        )
    return max(1, cache_tokens // tokens_per_pass)


def cached_tokens_per_pass(workload: Workload) -> tuple[int, int] | None:
    """``(kv_groups, tokens)`` for a packaged decoder's pass: the query heads sharing a
    key/value head, and the tokens whose K and V one pass holds in each block (``B x T``:
    a block's per-input weight values over ``2 x kv_dim``). None for any other workload, or
    one named as a decoder whose blocks do not have that decoder's cache (a workload file)."""
    decoder = DECODERS.get(workload.name)
    if decoder is None:
        return None
    ops = workload.ops
    per_block = {
        sum(ops[i].k * ops[i].n for i in range(*layer) if not ops[i].weight_static)
        for layer in model_layers(workload)
    } - {0}
    if len(per_block) != 1:
        return None  # not one equal cache in every block
    values = per_block.pop()
    if values % (2 * decoder.kv_dim):
        return None
    return decoder.group, values // (2 * decoder.kv_dim)


def petals_passes(workload: Workload) -> int:
    """The passes in flight Petals' default cache admits on ``workload``:
    :func:`cache_passes` of :func:`default_cache_tokens` and
    :func:`cached_tokens_per_pass`; 1 where the workload is no packaged decoder."""
    found = cached_tokens_per_pass(workload)
    if found is None:
        return 1
    groups, tokens = found
    return cache_passes(default_cache_tokens(groups), tokens)


def reserved_block_bytes(ops: Sequence[MatmulOp], layer: Layer, passes: int) -> int:
    """Bytes a server holding ``layer`` needs for ``passes`` passes in flight: its static
    weights once, and per pass its products' inputs, outputs and per-input weights (the
    KV cache). At ``passes = 1`` this is
    :func:`~sedma.compute.partition.layers.layer_bytes`. Raises :class:`PlanError` for
    ``passes < 1``."""
    if passes < 1:
        raise PlanError(f"reserved_block_bytes: passes = {passes!r}; must be >= 1")
    total = 0
    for i in range(*layer):
        op = ops[i]
        per_pass = op.input_bytes + op.output_bytes
        if op.weight_static:
            total += op.weight_bytes + passes * per_pass
        else:
            total += passes * (op.weight_bytes + per_pass)
    return total
