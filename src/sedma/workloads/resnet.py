"""ResNet-50 (He et al., CVPR 2016) inference on one ImageNet image, as a dataflow of products.

Covers: :func:`resnet50`, the 53 convolutions and the classifier of ResNet-50 v1.5 at batch 1
on a 224x224x3 input, generated from the stage table of the paper's Table 1, with the edges
of its residual dataflow; and the im2col helpers shared with the other convolutional models
(:func:`conv_out_size`, :func:`conv_op`). Does not cover: batch and scale (see
:mod:`sedma.workloads.registry`, which multiplies ``m``), pooling, batch norm, activations
and residual additions (no weights, no products: edges pass through them), or the training
pass.

Sources: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016; the v1.5 variant as torchvision's ``resnet50`` defines it (its ``Bottleneck``
puts the stride on the 3x3 conv), the one MLPerf inference uses.

Each convolution is written as its im2col product (Chellapilla et al. 2006)::

    m = H_out * W_out        (one row per output position)
    k = C_in * kh * kw       (one column per input value under the kernel)
    n = C_out                (one output channel per weight column)
    H_out = floor((H_in + 2 * pad - dilation * (kh - 1) - 1) / stride) + 1

"v1.5" (the torchvision and MLPerf variant) puts a bottleneck's stride on its 3x3 conv, not
on its first 1x1 conv as the paper does: the weights are the same, the 3x3 then sees the
larger map, so the total is about 4.1 GMACs (8.2 GFLOP) instead of the paper's 3.8 GMACs.
The weights of the convolutions and the classifier (no biases, no batch norm) number
25,502,912 (25.5 M).

Edges (``inputs``: the products whose outputs a product's ``X`` is made from), following
the bottleneck block of He et al. 2016 (Fig. 5 right, Eq. 1-2) as torchvision's v1.5
``Bottleneck.forward`` computes it: ``out = bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))))``,
``out += downsample(x)`` (or ``x``), ``relu(out)``:

- ``conv1`` (the stem) reads the image: no edge. Its 3x3/2 max pool has no weights, so
  ``layer1.0.conv1`` and ``layer1.0.downsample`` read ``conv1``.
- In every block, ``conv2`` reads ``conv1`` and ``conv3`` reads ``conv2`` (a 3x3 conv reads
  the im2col expansion of ``conv1``'s output: the edge is to ``conv1``, whose output is
  what moves).
- A block's output is the residual sum ``conv3 + shortcut``, added (with its ReLU, no
  weights) by whoever reads it. So the next block's ``conv1``, its ``downsample`` if it
  has one, and ``fc`` (after the global average pool) read both terms: the block's
  ``conv3``, and its shortcut: ``downsample`` in a projection block (the first of each
  stage), the block's own input in an identity block. That input is itself a sum; as
  torchvision accumulates it into ``conv3``'s output (``out += identity``), it is carried
  by the previous block's ``conv3``. Example: ``layer1.1.conv1`` reads ``layer1.0.conv3``
  and ``layer1.0.downsample``; ``layer1.2.conv1`` reads ``layer1.1.conv3`` and
  ``layer1.0.conv3``; ``layer2.0.downsample`` reads ``layer1.2.conv3`` and
  ``layer1.1.conv3``.

Each residual addition thus costs two edges, each moving one tensor of the block's output
shape: exactly the two operands the addition needs, and every earlier product is an
ancestor through them. (Following every term of the sum back to its products instead, as
:mod:`sedma.workloads.onnx_format` does for a file, names up to seven products for one
tensor that moves once.) Totals: 72 edges: 32 inside blocks, 31 into the blocks' first
convs (two each, one for ``layer1.0``), 7 into the projections (1 + 3 x 2), 2 into ``fc``.

Error budgets: ``conv1`` and ``fc`` get ``max_rel_error = 0.02``, every other layer 0.1.
Analog in-memory and low-precision inference work keeps the first and last layers at higher
precision (Zhou et al. 2016, DoReFa-Net; Joshi et al., Nat. Commun. 11, 2473, 2020): the
first layer has few input channels (k = 147), so device noise does not average out over a
long dot product, and errors in the last layer land directly on the logits.
"""

from __future__ import annotations

from sedma.compute.workload import MatmulOp, Workload

__all__ = [
    "IMAGE_SIZE",
    "SENSITIVE_REL_ERROR",
    "STAGES",
    "conv_op",
    "conv_out_size",
    "resnet50",
]

IMAGE_SIZE = 224
"""Side of the (square) ImageNet input after the usual resize and crop."""

SENSITIVE_REL_ERROR = 0.02
"""Error budget of the layers most sensitive to noise (first and last, attention)."""

DEFAULT_REL_ERROR = 0.1

STAGES: tuple[tuple[int, int, int, int], ...] = (
    # (blocks, bottleneck width, output channels, stride of the first block)
    (3, 64, 256, 1),
    (4, 128, 512, 2),
    (6, 256, 1024, 2),
    (3, 512, 2048, 2),
)
"""ResNet-50's four stages (He et al. 2016, Table 1: conv2_x .. conv5_x)."""

_STEM_CHANNELS = 64
_CLASSES = 1000


def conv_out_size(size: int, kernel: int, stride: int = 1, pad: int = 0, dilation: int = 1) -> int:
    """Output side of a convolution or pooling window (floor mode).

    ``floor((size + 2 * pad - dilation * (kernel - 1) - 1) / stride) + 1``.
    """
    out = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    assert out >= 1, (size, kernel, stride, pad, dilation)
    return out


def conv_op(
    name: str,
    size_in: int,
    c_in: int,
    c_out: int,
    kernel: int,
    *,
    stride: int = 1,
    pad: int = 0,
    dilation: int = 1,
    max_rel_error: float = DEFAULT_REL_ERROR,
    inputs: tuple[str, ...] = (),
) -> tuple[MatmulOp, int]:
    """The im2col product of a square convolution on a square map, and the output side.

    ``inputs`` names the products whose outputs make the convolution's input map (the edge
    is to them, not to the expansion); with none, it reads the model's input, an image of
    ``size_in x size_in x c_in`` values (``source_bytes``), not its expansion.
    """
    size_out = conv_out_size(size_in, kernel, stride, pad, dilation)
    op = MatmulOp(
        name=name,
        m=size_out * size_out,
        k=c_in * kernel * kernel,
        n=c_out,
        max_rel_error=max_rel_error,
        inputs=inputs,
        source_bytes=None if inputs else size_in * size_in * c_in * 4,
    )
    return op, size_out


def resnet50() -> Workload:
    """ResNet-50 v1.5 on one 224x224x3 image: 54 products, 72 edges, ~8.2 GFLOP, 25.5 M weights."""
    ops: list[MatmulOp] = []
    # Stem: 7x7/2 conv (224 -> 112), then a 3x3/2 max pool (112 -> 56) that has no weights.
    stem, size = conv_op(
        "conv1",
        IMAGE_SIZE,
        3,
        _STEM_CHANNELS,
        7,
        stride=2,
        pad=3,
        max_rel_error=SENSITIVE_REL_ERROR,
    )
    ops.append(stem)
    size = conv_out_size(size, 3, stride=2, pad=1)
    c_in = _STEM_CHANNELS
    # The products whose outputs make the current block's input (the terms of a sum).
    block_input: tuple[str, ...] = (stem.name,)
    for stage, (blocks, width, c_out, first_stride) in enumerate(STAGES, start=1):
        for block in range(blocks):
            stride = first_stride if block == 0 else 1
            prefix = f"layer{stage}.{block}"
            reduce, _ = conv_op(f"{prefix}.conv1", size, c_in, width, 1, inputs=block_input)
            spatial, size_out = conv_op(
                f"{prefix}.conv2",
                size,
                width,
                width,
                3,
                stride=stride,
                pad=1,
                inputs=(reduce.name,),
            )
            expand, _ = conv_op(
                f"{prefix}.conv3", size_out, width, c_out, 1, inputs=(spatial.name,)
            )
            ops += [reduce, spatial, expand]
            if block == 0:
                # Projection shortcut: channels change in every first block (64 -> 256 too).
                shortcut, _ = conv_op(
                    f"{prefix}.downsample", size, c_in, c_out, 1, stride=stride, inputs=block_input
                )
                ops.append(shortcut)
                carried_shortcut = shortcut.name
            else:
                # Identity: the block's input, a sum carried by the previous block's conv3.
                carried_shortcut = block_input[0]
            block_input = (expand.name, carried_shortcut)
            size, c_in = size_out, c_out
    # Global average pool (no weights), then the classifier: one row per image.
    ops.append(
        MatmulOp(
            "fc", m=1, k=c_in, n=_CLASSES, max_rel_error=SENSITIVE_REL_ERROR, inputs=block_input
        )
    )
    return Workload(
        name="resnet50",
        ops=tuple(ops),
        description="ResNet-50 v1.5 (He et al. 2016), ImageNet 224x224x3, im2col products",
    )
