"""BERT-base (Devlin et al., NAACL 2019) answering one SQuAD question, as matrix products.

Covers: :func:`bert_base`, the products of BERT-base's 12 encoder layers (hidden 768, 12
heads of 64, feed-forward 3072) and the SQuAD span head, at batch 1 on one 384-token
sequence (the usual SQuAD v1.1 fine-tuning length). Does not cover: batch and scale (see
:mod:`sedma.workloads.registry`), the embedding lookups and the pooler (a gather, and a
layer SQuAD does not use), softmax, layer norm, GELU and residual additions (no products).

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

Error budgets: ``scores``, ``context`` and ``head.span`` get ``max_rel_error = 0.02``,
everything else 0.1. The score errors are exponentiated by the softmax, and the span head's
errors land directly on the answer logits (see :mod:`sedma.workloads.resnet` for the
literature on first and last layers).
"""

from __future__ import annotations

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
    """BERT-base on one 384-token SQuAD sequence: 73 products, ~70.7 GFLOP."""
    head_dim = HIDDEN // HEADS
    ops: list[MatmulOp] = []
    for i in range(LAYERS):
        p = f"L{i}"
        ops += [
            MatmulOp(f"{p}.qkv", m=SEQ_LEN, k=HIDDEN, n=3 * HIDDEN),
            MatmulOp(
                f"{p}.scores",
                m=HEADS * SEQ_LEN,
                k=head_dim,
                n=SEQ_LEN,
                max_rel_error=SENSITIVE_REL_ERROR,
                weight_static=False,
            ),
            MatmulOp(
                f"{p}.context",
                m=HEADS * SEQ_LEN,
                k=SEQ_LEN,
                n=head_dim,
                max_rel_error=SENSITIVE_REL_ERROR,
                weight_static=False,
            ),
            MatmulOp(f"{p}.attn_out", m=SEQ_LEN, k=HIDDEN, n=HIDDEN),
            MatmulOp(f"{p}.ffn_in", m=SEQ_LEN, k=HIDDEN, n=FFN),
            MatmulOp(f"{p}.ffn_out", m=SEQ_LEN, k=FFN, n=HIDDEN),
        ]
    ops.append(MatmulOp("head.span", m=SEQ_LEN, k=HIDDEN, n=2, max_rel_error=SENSITIVE_REL_ERROR))
    return Workload(
        name="bert-base",
        ops=tuple(ops),
        description="BERT-base (Devlin et al. 2019), SQuAD, 384 tokens, 12 heads batched",
    )
