"""Real models as matrix products: the workloads sedma places and runs.

Covers, one module each:

- :mod:`~sedma.workloads.registry`: :func:`get_workload` by name with ``batch`` and ``scale``
  (both multiply ``m`` only), :func:`workload_names`, :func:`summary`.
- :mod:`~sedma.workloads.resnet`: ResNet-50 v1.5 on ImageNet (224x224x3), every conv as its
  im2col product; also the im2col helpers the detector reuses.
- :mod:`~sedma.workloads.detector`: SSD300 with a VGG-16 backbone on COCO (300x300x3, 81
  classes).
- :mod:`~sedma.workloads.bert`: BERT-base on SQuAD (384 tokens), attention products marked
  ``weight_static=False``.

Does not cover: the product and workload types (see :mod:`sedma.compute.workload`), request
arrival traces, or where products run (see :mod:`sedma.compute.partition.planner`).
"""

from __future__ import annotations

from sedma.workloads.registry import get_workload, summary, workload_names

__all__ = ["get_workload", "summary", "workload_names"]
