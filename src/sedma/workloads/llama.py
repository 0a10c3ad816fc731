"""Decoder-only LLMs of the LLaMA architecture generating tokens, as graphs.

Covers: :func:`decode_step`, one decode step of a :class:`Decoder`'s published shapes for a
batch of sequences at a given context length, as a
:class:`~sedma.workloads.graph.WorkloadGraph` with its dataflow edges, for the two packaged
decoders: :data:`LLAMA_7B` (Touvron et al. 2023: 32 layers, hidden 4096, 32 heads of 128,
SwiGLU feed-forward 11008, vocabulary 32000; :func:`llama_7b`) and :data:`TINYLLAMA_1_1B`
(Zhang et al. 2024, "TinyLlama: an open-source small language model", arXiv:2401.02385, and its
released config: 22 layers, hidden 2048, 32 query heads of 64 sharing 4 key/value heads,
feed-forward 5632, vocabulary 32000); both with 16-bit weights. Also the memory a decoder needs
held (:func:`kv_cache_bytes`, :func:`model_bytes`, :attr:`Decoder.parameters`; LLaMA-7B's as
module constants such as :data:`PARAMETERS`). Does not cover: the prompt (prefill) pass, the
registry's ``scale`` and ``batch`` (see :mod:`sedma.workloads.registry`, whose
``get_workload("llama-7b", context=...)`` builds this), sampling, RMSNorm, rotary embeddings,
softmax and the SwiGLU gating itself (element-wise work, no products), or where the cache lives
between steps (a planner's or backend's job).

One pass is one decode step: each of the ``B`` sequences (default :data:`BATCH` = 8) adds one
token, attending to the ``T`` tokens of its context (``context``, default
:data:`DEFAULT_CONTEXT`; at most :data:`MAX_CONTEXT`). Per layer ``L<i>`` (``i`` = 0 .. 31),
with ``H = 4096``:

- ``qkv``: ``B x H @ H x 3H``. Q, K and V fused into one product, as in
  :mod:`sedma.workloads.bert` (they read the same input; optimised runtimes run them fused).
- ``scores`` (``Q K^T``): ``1 x BH @ BH x T``, ``weight_static=False``.
- ``context`` (``softmax(.) V``): ``1 x T @ T x BH``, ``weight_static=False``.
- ``attn_out`` ``H -> H``; ``gate`` and ``up`` ``H -> 11008`` (SwiGLU's two input
  projections, both reading the attention block's output); ``down`` ``11008 -> H``,
  reading ``gate`` and ``up``.

Then ``lm_head``: ``B x H @ H x 32000`` (the logits).

Grouped-query attention (TinyLlama: ``g = heads / kv_heads = 8`` query heads share each key
and value head, so the cache holds ``kv_dim = H x kv_heads / heads`` values per token, 256
for TinyLlama). ``qkv`` is ``H -> H + 2 kv_dim``; the ``g`` query heads of a group become
``scores``'s and ``context``'s rows: ``scores`` is ``g x B kv_dim @ B kv_dim x T`` and
``context`` ``g x T @ T x B kv_dim``. That keeps the FLOPs (``2 x B x H x T`` each), the
cache bytes (``B x kv_dim x T`` each) and the ``B x H`` queries and attention outputs
exact; for LLaMA-7B (``g = 1``) it is the one-row fold described below.

The embedding lookup is a gather, not a product: its table (32000 x 4096) is counted in
:data:`PARAMETERS` and :func:`model_bytes` but is no product of the graph.

How the KV cache is represented. The cache is what a decode step reads besides the weights,
and it grows by one token per step. Here it is the non-static "weight" of the two attention
products: ``scores``'s ``W`` is layer ``i``'s K cache and ``context``'s ``W`` is its V cache,
each ``B x H x T`` elements (every head of every sequence), so a node holding an attention
product must keep that layer's cache, and the graph's non-static weight bytes sum to exactly
:func:`kv_cache_bytes` (``2 x layers x H x T x B x dtype_bytes``). A dense product cannot
hold a batched one exactly: the true attention is ``B x 32`` independent products (one per
sequence and head) of ``1 x 128 @ 128 x T`` and ``1 x T @ T x 128``. Folding the sequences
and heads into ``k`` (``scores``) or ``n`` (``context``) with one row keeps exact FLOPs
(``2 x B x H x T`` each), exact cache bytes, ``scores``'s exact input (the ``B x H`` queries)
and ``context``'s exact output (the ``B x H`` attention outputs); what it cannot keep is the
probabilities between the two, ``B x 32 x T`` values, shown as ``T`` (``scores``'s output and
``context``'s input). The two products of a layer belong together (a real runtime never
splits them), so that edge only matters to a placement that parts them. A planner splits a
one-row product by the columns of ``W``: here, by context positions (``scores``) and by
sequences and heads (``context``), both exact splits of the real computation.

Edges (``inputs``). ``L0.qkv`` reads the model's input (the embedded tokens). ``scores``
reads ``qkv`` (the new Q and K); ``context`` reads ``scores`` and ``qkv`` (the new V);
``attn_out`` reads ``context``; ``gate`` and ``up`` read ``attn_out``; ``down`` reads
``gate`` and ``up``; the next layer's ``qkv`` reads ``down``; ``lm_head`` reads the last
``down``. The residual stream (``B x H``, the size of each of those outputs) is taken to
travel with the product that last added into it (``attn_out``, ``down``), as pipelined
runtimes send one hidden state per stage boundary.

Error budgets: the convention of the other packaged models and of ONNX files
(:mod:`sedma.workloads.onnx_format`): the first product (``L0.qkv``, reading only the model's
input) and the last (``lm_head``, whose errors land on the logits) get
``max_rel_error = 0.02``, every other product 0.1 (see :mod:`sedma.workloads.resnet` for the
literature). ``bert-base`` also tightens its attention products; here they stay at 0.1
because they cannot go to crossbar arrays anyway (their ``W`` is not static) and digital
devices are exact, so their budget never decides where they run.

LLaMA-7B's totals (batch 8, context 1,024): 225 products, 6,607,077,376 weights in static products
(13.2 GB at 16 bit; with the embedding table and the norms, the 6,738,415,616 parameters of
LLaMA-7B, 13.5 GB), 110 GFLOP per step; KV cache 4.3 GB (8.6 GB at 2,048 tokens).
TinyLlama-1.1B's: 155 products, 1,100,048,384 parameters (2.2 GB at 16 bit), 18.0 GFLOP per
step at 1,024 tokens; KV cache 185 MB (369 MB at 2,048 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

from sedma.errors import SpecError
from sedma.workloads.graph import DEFAULT_MAX_REL_ERROR, Layer, WorkloadGraph, ordered
from sedma.workloads.resnet import SENSITIVE_REL_ERROR

__all__ = [
    "BATCH",
    "DECODERS",
    "DEFAULT_CONTEXT",
    "DTYPE_BYTES",
    "FFN",
    "HEADS",
    "HIDDEN",
    "LAYERS",
    "LLAMA_7B",
    "MAX_CONTEXT",
    "PARAMETERS",
    "TINYLLAMA_1_1B",
    "VOCAB",
    "Decoder",
    "decode_step",
    "kv_cache_bytes",
    "llama_7b",
    "model_bytes",
]

DTYPE_BYTES = 2
"""16-bit weights and cache (fp16 or bf16), as both decoders are released and served."""
BATCH = 8
"""Sequences decoding together in one pass."""
MAX_CONTEXT = 2048
"""Both decoders' training context: the longest a sequence grows to in a run."""
DEFAULT_CONTEXT = 1024
"""The context a pass is built for when none is given: half-way through a run to 2,048."""


@dataclass(frozen=True)
class Decoder:
    """A LLaMA-architecture decoder's published shape (SwiGLU, untied LM head, RMSNorm)."""

    name: str
    citation: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int

    @property
    def kv_dim(self) -> int:
        """Values per token in one of a layer's caches: ``hidden x kv_heads / heads``."""
        return self.hidden // self.heads * self.kv_heads

    @property
    def group(self) -> int:
        """Query heads sharing one key/value head (1 without grouped-query attention)."""
        return self.heads // self.kv_heads

    @property
    def parameters(self) -> int:
        """Every parameter: the products' weights, embedding table, LM head and norms."""
        h, f = self.hidden, self.ffn
        per_layer = h * (h + 2 * self.kv_dim) + h * h + 3 * h * f
        norms = (2 * self.layers + 1) * h  # two RMSNorm gains per layer and a final one
        return self.layers * per_layer + 2 * self.vocab * h + norms


LLAMA_7B = Decoder("llama-7b", "LLaMA-7B (Touvron et al. 2023)", 32, 4096, 32, 32, 11008, 32000)
"""LLaMA-7B: 6,738,415,616 parameters. Its FFN (11008) is 2/3 of 4 x 4096 rounded up to a
multiple of 256 (the paper)."""
TINYLLAMA_1_1B = Decoder(
    "tinyllama-1.1b",
    "TinyLlama-1.1B (Zhang et al. 2024, arXiv:2401.02385)",
    22,
    2048,
    32,
    4,
    5632,
    32000,
)
"""TinyLlama-1.1B: the Llama 2 architecture with grouped-query attention, 1,100,048,384
parameters (its released config: 22 layers, hidden 2048, 32 heads, 4 key/value heads,
intermediate 5632, vocabulary 32000, untied embeddings)."""
DECODERS = {d.name: d for d in (LLAMA_7B, TINYLLAMA_1_1B)}
"""The packaged decoders by workload name."""

LAYERS = LLAMA_7B.layers
HIDDEN = LLAMA_7B.hidden
HEADS = LLAMA_7B.heads
FFN = LLAMA_7B.ffn
VOCAB = LLAMA_7B.vocab
PARAMETERS = LLAMA_7B.parameters
"""LLaMA-7B's parameters, 6,738,415,616: products' weights, embedding table and norms."""

_MAX_BATCH = 1 << 20  # far above any real batch; keeps every size a plain int


def _check(name: str, value: object, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise SpecError(f"{name} = {value!r}; allowed: an integer with 1 <= {name} <= {most}")
    return value


def kv_cache_bytes(context: int, batch: int = BATCH, decoder: Decoder = LLAMA_7B) -> int:
    """Bytes of the K and V caches of ``batch`` sequences at ``context`` tokens.

    ``2 x layers x kv_dim x context x batch x DTYPE_BYTES``: one K and one V vector of
    ``kv_dim`` values per layer, token and sequence. For LLaMA-7B 8,589,934,592 (8.6 GB,
    8 GiB) at 2,048 tokens and batch 8. Raises :class:`~sedma.errors.SpecError` for a
    ``context`` outside ``1 .. MAX_CONTEXT`` or a ``batch`` below 1.
    """
    _check("context", context, MAX_CONTEXT)
    _check("batch", batch, _MAX_BATCH)
    return 2 * decoder.layers * decoder.kv_dim * context * batch * DTYPE_BYTES


def model_bytes(context: int = MAX_CONTEXT, batch: int = BATCH, decoder: Decoder = LLAMA_7B) -> int:
    """Bytes the whole model needs held at ``context``: every parameter and the KV cache.

    ``parameters x DTYPE_BYTES + kv_cache_bytes(context, batch)``: for LLaMA-7B
    22,066,765,824 (22.1 GB, 20.6 GiB) at 2,048 tokens and batch 8. Activations (a few MiB
    per step) are not counted.
    """
    return decoder.parameters * DTYPE_BYTES + kv_cache_bytes(context, batch, decoder)


def _product(
    name: str,
    m: int,
    k: int,
    n: int,
    inputs: tuple[str, ...],
    *,
    static: bool = True,
    budget: float = DEFAULT_MAX_REL_ERROR,
) -> Layer:
    return Layer(name, m, k, n, inputs, static, budget, DTYPE_BYTES)


def decode_step(
    decoder: Decoder, context: int = DEFAULT_CONTEXT, batch: int = BATCH
) -> WorkloadGraph:
    """One decode step of ``decoder`` for ``batch`` sequences at ``context`` tokens.

    Raises :class:`~sedma.errors.SpecError` for a ``context`` outside ``1 .. MAX_CONTEXT``
    or a ``batch`` below 1.
    """
    t = _check("context", context, MAX_CONTEXT)
    b = _check("batch", batch, _MAX_BATCH)
    h, g = decoder.hidden, decoder.group
    bkv = b * decoder.kv_dim  # every key/value head of every sequence, folded into one dimension
    layers: list[Layer] = []
    previous: tuple[str, ...] = ()  # L0 reads the model's input: the embedded tokens
    for i in range(decoder.layers):
        p = f"L{i}"
        first = SENSITIVE_REL_ERROR if i == 0 else DEFAULT_MAX_REL_ERROR
        layers += [
            _product(f"{p}.qkv", b, h, h + 2 * decoder.kv_dim, previous, budget=first),
            _product(f"{p}.scores", g, bkv, t, (f"{p}.qkv",), static=False),
            _product(f"{p}.context", g, t, bkv, (f"{p}.scores", f"{p}.qkv"), static=False),
            _product(f"{p}.attn_out", b, h, h, (f"{p}.context",)),
            _product(f"{p}.gate", b, h, decoder.ffn, (f"{p}.attn_out",)),
            _product(f"{p}.up", b, h, decoder.ffn, (f"{p}.attn_out",)),
            _product(f"{p}.down", b, decoder.ffn, h, (f"{p}.gate", f"{p}.up")),
        ]
        previous = (f"{p}.down",)
    layers.append(_product("lm_head", b, h, decoder.vocab, previous, budget=SENSITIVE_REL_ERROR))
    return WorkloadGraph(
        name=decoder.name,
        layers=ordered(layers),
        batch=b,
        description=(
            f"{decoder.citation}, one decode step, {b} sequences at {t} tokens, "
            "16-bit; KV cache as the attention products' weights"
        ),
    )


def llama_7b(context: int = DEFAULT_CONTEXT, batch: int = BATCH) -> WorkloadGraph:
    """One decode step of LLaMA-7B (:func:`decode_step` of :data:`LLAMA_7B`)."""
    return decode_step(LLAMA_7B, context, batch)
