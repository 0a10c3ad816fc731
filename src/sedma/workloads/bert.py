"""BERT-base (Devlin et al., NAACL 2019) answering one SQuAD question, as a dataflow of products.

Covers: :func:`bert_base`, the products of BERT-base's 12 encoder layers (hidden 768, 12
heads of 64, feed-forward 3072) and the SQuAD span head, at batch 1 on one 384-token
sequence (the usual SQuAD v1.1 fine-tuning length). Does not cover: batch and scale (see
:mod:`sedma.workloads.registry`), the embedding lookups and the pooler (a gather, and a
layer SQuAD does not use), softmax, layer norm, GELU and residual additions (no products:
edges pass through them).

Sources: J. Devlin, M.-W. Chang, K. Lee, K. Toutanova, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding", NAACL 2019; A. Vaswani et al.,
"Attention Is All You Need", NeurIPS 2017 (the encoder layer BERT uses).

Per layer ``L<i>`` (``i`` = 0 .. 11), with ``T = 384`` tokens:

- ``qkv``: ``T x 768 @ 768 x 2304``. Q, K and V are one fused product: the three read the
  same input, so one product with the concatenated weight ``[Wq | Wk | Wv]`` is both what
  optimised runtimes run and the honest memory picture (three products would each count a
  copy of the same input in their live bytes).
- ``scores``: ``Q K^T``, ``12T x 64 @ 64 x T``. The 12 heads are batched: each head's
  ``K^T`` is a different operand; sedma treats the batched product as one product whose
  weight changes per input (``weight_static=False``, so it cannot live in crossbar arrays).
- ``context``: ``softmax(scores) V``, ``12T x T @ T x 64``, batched over heads the same way,
  ``weight_static=False``.
- ``attn_out`` ``768 -> 768``, ``ffn_in`` ``768 -> 3072`` and ``ffn_out`` ``3072 -> 768``.

Then ``head.span``: ``T x 768 @ 768 x 2`` (start and end logits). Totals at batch 1: 73
products, 35.3 GMACs (70.7 GFLOP), 84.9 M weights in static products (the 110 M of
BERT-base add the embedding tables, the pooler, biases and layer norms).

Edges (``inputs``: the products whose outputs a product's ``X`` or its per-input ``W`` is
made from). BERT's encoder layer is the Transformer's (Vaswani et al. 2017, Sec. 3.1-3.2,
which Devlin et al. 2019, Sec. 3, reuse unchanged) with the residual additions before each
layer norm: ``h = LN(x + attn_out(context(scores(qkv(x)))))``, then
``y = LN(h + ffn_out(GELU(ffn_in(h))))``. Per layer ``L<i>``:

- ``qkv`` reads the layer's input ``x``; ``L0.qkv`` reads the embeddings (the model's input,
  no edge).
- ``scores`` reads ``qkv`` (Q, and K as its per-input ``W``); ``context`` reads ``scores``
  (through the softmax) and ``qkv`` (V); ``attn_out`` reads ``context``. An edge moves its
  producer's whole output, so each of the two edges from the fused ``qkv`` moves Q, K and
  V, of which its reader uses two thirds or one third.
- ``ffn_in`` reads ``h``, the sum ``x + attn_out``: both terms, ``attn_out`` and the product
  that carries ``x`` (the previous layer's ``ffn_out``; none for ``L0``). ``ffn_out`` reads
  ``ffn_in`` (through the GELU).
- The next layer's ``qkv`` (and ``head.span`` after ``L11``) reads ``y``, the sum
  ``h + ffn_out``: ``attn_out`` (the last product added into ``h``, so the one that
  carries it) and ``ffn_out``.

A sum is carried by the product that last added into it, as for the residual stream of
:mod:`sedma.workloads.llama`, so each residual addition costs two edges of one ``T x 768``
tensor each: exactly the operands the addition needs (following every term back through
the layer norms instead would make layer ``i`` read ``2i`` products). Totals: 107 edges:
6 in ``L0``, 9 in each later layer, 2 into ``head.span``.

Error budgets: ``scores``, ``context`` and ``head.span`` get ``max_rel_error = 0.02``,
everything else 0.1. The score errors are exponentiated by the softmax, and the span head's
errors land directly on the answer logits (see :mod:`sedma.workloads.resnet` for the
literature on first and last layers).
"""

from __future__ import annotations

from functools import partial

from sedma.compute.workload import MatmulOp, Workload
from sedma.workloads.resnet import SENSITIVE_REL_ERROR

__all__ = ["FFN", "HEADS", "HIDDEN", "LAYERS", "SEQ_LEN", "bert_base"]

LAYERS = 12
HIDDEN = 768
HEADS = 12
FFN = 3072
SEQ_LEN = 384
"""Tokens per SQuAD sequence (question + passage window) in BERT's fine-tuning setup."""


def bert_base() -> Workload:
    """BERT-base on one 384-token SQuAD sequence: 73 products, 107 edges, ~70.7 GFLOP."""
    head_dim = HIDDEN // HEADS
    # scores and context alike: batched over the heads, a W that changes with every input
    # (K, V), errors the softmax amplifies (the module docstring)
    attention = partial(
        MatmulOp, m=HEADS * SEQ_LEN, max_rel_error=SENSITIVE_REL_ERROR, weight_static=False
    )
    ops: list[MatmulOp] = []
    layer_input: tuple[str, ...] = ()  # the products whose outputs sum to the layer's input
    x_carrier: tuple[str, ...] = ()  # the product carrying the layer's input (the last ffn_out)
    for i in range(LAYERS):
        p = f"L{i}"
        ops += [
            MatmulOp(f"{p}.qkv", m=SEQ_LEN, k=HIDDEN, n=3 * HIDDEN, inputs=layer_input),
            attention(f"{p}.scores", k=head_dim, n=SEQ_LEN, inputs=(f"{p}.qkv",)),
            attention(f"{p}.context", k=SEQ_LEN, n=head_dim, inputs=(f"{p}.scores", f"{p}.qkv")),
            MatmulOp(f"{p}.attn_out", m=SEQ_LEN, k=HIDDEN, n=HIDDEN, inputs=(f"{p}.context",)),
            # h = LN(x + attn_out): x is carried by the previous layer's ffn_out.
            MatmulOp(
                f"{p}.ffn_in",
                m=SEQ_LEN,
                k=HIDDEN,
                n=FFN,
                inputs=(f"{p}.attn_out", *x_carrier),
            ),
            MatmulOp(f"{p}.ffn_out", m=SEQ_LEN, k=FFN, n=HIDDEN, inputs=(f"{p}.ffn_in",)),
        ]
        # y = LN(h + ffn_out): h is carried by attn_out, into which it was last added.
        layer_input = (f"{p}.attn_out", f"{p}.ffn_out")
        x_carrier = (f"{p}.ffn_out",)
    ops.append(
        MatmulOp(
            "head.span",
            m=SEQ_LEN,
            k=HIDDEN,
            n=2,
            max_rel_error=SENSITIVE_REL_ERROR,
            inputs=layer_input,
        )
    )
    return Workload(
        name="bert-base",
        ops=tuple(ops),
        description="BERT-base (Devlin et al. 2019), SQuAD, 384 tokens, 12 heads batched",
    )
