"""Real models as matrix products joined by dataflow edges: the workloads sedma places and runs.

Covers, one module each:

- :mod:`~sedma.workloads.registry`: :func:`get_workload` by name or workload file with
  ``batch`` and ``scale`` (both multiply ``m`` only), :func:`load_workload_file`,
  :func:`workload_names`, :func:`summary`.
- :mod:`~sedma.workloads.graph`: :class:`Layer` and :class:`WorkloadGraph`, a model as a
  dataflow graph of products (what workload files are read into).
- :mod:`~sedma.workloads.toml_format`: the workload spec format (TOML; docs/spec.md).
- :mod:`~sedma.workloads.onnx_format`: your own model from an ONNX file (MatMul, Gemm and
  Conv as products, im2col shapes, the graph's edges as ``inputs``).
- :mod:`~sedma.workloads.resnet`: ResNet-50 v1.5 on ImageNet (224x224x3), every conv as its
  im2col product, edges through the bottlenecks and residual sums; also the im2col helpers
  the detector reuses.
- :mod:`~sedma.workloads.detector`: SSD300 with a VGG-16 backbone on COCO (300x300x3, 81
  classes), a backbone chain and six pairs of heads on their source maps.
- :mod:`~sedma.workloads.bert`: BERT-base on SQuAD (384 tokens), attention products marked
  ``weight_static=False``, edges through attention and the residual sums.
- :mod:`~sedma.workloads.llama`: LLaMA-7B generating tokens (one decode step of 8
  sequences, 16-bit) as a dataflow graph whose attention products hold the KV cache at a
  given context; :func:`~sedma.workloads.llama.kv_cache_bytes` and
  :func:`~sedma.workloads.llama.model_bytes` size what it needs held.

Does not cover: the product and workload types and the edge checks (see
:mod:`sedma.compute.workload`), request arrival traces, or where products run (see
:mod:`sedma.compute.partition.planner`).
"""

from __future__ import annotations

from sedma.workloads.graph import Layer, WorkloadGraph
from sedma.workloads.registry import get_workload, load_workload_file, summary, workload_names

__all__ = [
    "Layer",
    "WorkloadGraph",
    "get_workload",
    "load_workload_file",
    "summary",
    "workload_names",
]
