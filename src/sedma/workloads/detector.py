"""SSD300 (Liu et al., ECCV 2016) on one COCO image, as a dataflow of products.

Covers: :func:`ssd300`, the convolutions of SSD300 with its VGG-16 backbone (Simonyan and
Zisserman 2015), the extra feature layers and the localisation and confidence heads on the
six feature maps, for COCO's 80 classes plus background, at batch 1 on a 300x300x3 input
(COCO images are resized to it). Does not cover: batch and scale (see
:mod:`sedma.workloads.registry`), pooling and activations (no weights), L2 normalisation of
conv4_3 (one scale per channel, not a product: edges pass through it), default-box
decoding and non-maximum suppression (no products), or the im2col arithmetic itself (see
:func:`sedma.workloads.resnet.conv_op`).

Sources: W. Liu, D. Anguelov, D. Erhan, C. Szegedy, S. Reed, C.-Y. Fu, A. C. Berg, "SSD:
Single Shot MultiBox Detector", ECCV 2016; K. Simonyan, A. Zisserman, "Very Deep
Convolutional Networks for Large-Scale Image Recognition", ICLR 2015.

The network, as the paper and its reference implementation define it:

- VGG-16 conv1_1 .. conv5_3 (3x3, pad 1), with 2x2/2 max pools between the blocks; pool3
  rounds up (75 -> 38) so that conv4_3 is 38x38; pool5 is 3x3/1 (19 stays 19).
- fc6 and fc7 become convolutions: conv6 is 3x3 with dilation 6 and 1024 channels, conv7 is
  1x1 with 1024 channels (both 19x19).
- Extra layers: conv8_1/conv8_2 (1x1 256, 3x3/2 512 -> 10x10), conv9_1/conv9_2 (1x1 128,
  3x3/2 256 -> 5x5), conv10_1/conv10_2 (1x1 128, 3x3 valid 256 -> 3x3), conv11_1/conv11_2
  (1x1 128, 3x3 valid 256 -> 1x1).
- Heads: on conv4_3, conv7, conv8_2 .. conv11_2 (38, 19, 10, 5, 3, 1) with 4, 6, 6, 6, 4, 4
  default boxes per location, a 3x3 conv to ``boxes * 4`` offsets (``head.loc.SxS``) and
  one to ``boxes * 81`` class scores (``head.conf.SxS``).

Totals at batch 1: 35 products, 34.4 GMACs (68.7 GFLOP), 34.3 M weights. VGG-16's fc8 is
dropped and its fc6 shrinks to the 4.7 M weights of conv6; the VGG-16 convs hold 14.7 M and
the COCO confidence heads 10.8 M. Most of the work is the backbone at 300x300 and 150x150
(conv1_2 alone: 3.3 GMACs).

Edges (``inputs``: the products whose outputs a product's ``X`` is made from; each 3x3 conv
reads the im2col expansion of its producer's output, and the edge is to the producer, whose
output is what moves), from the network of Liu et al. 2016 (Fig. 2) and the reference
implementation: SSD has no skip connections, so

- the backbone is a chain: ``conv1_1`` reads the image (no edge); every later VGG-16 conv,
  ``conv6``, ``conv7`` and each extra layer reads the product before it (through the max
  pools, pool5 included, which have no weights): 22 edges;
- each detection head reads its source feature map: ``head.loc.38x38`` and
  ``head.conf.38x38`` read ``conv4_3`` (through the L2 normalisation, no product), the
  19x19 heads ``conv7``, then ``conv8_2``, ``conv9_2``, ``conv10_2`` and ``conv11_2``: 12
  edges, and the 12 heads are the pass's outputs (default-box decoding and NMS follow).

Totals: 34 edges.

Error budgets: ``conv1_1`` and the six confidence heads get ``max_rel_error = 0.02``,
everything else 0.1: the first layer has k = 27 (noise does not average out) and the
confidence heads feed the softmax that decides which boxes survive (see
:mod:`sedma.workloads.resnet` for the literature).
"""

from __future__ import annotations

from sedma.compute.workload import MatmulOp, Workload
from sedma.workloads.resnet import SENSITIVE_REL_ERROR, conv_op, conv_out_size

__all__ = ["COCO_CLASSES", "IMAGE_SIZE", "ssd300"]

IMAGE_SIZE = 300
COCO_CLASSES = 81
"""COCO's 80 object classes plus background."""

# VGG-16 blocks up to conv5_3: (block number, convs in the block, channels).
_VGG_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (1, 2, 64),
    (2, 2, 128),
    (3, 3, 256),
    (4, 3, 512),
    (5, 3, 512),
)

# Extra feature layers: (name, bottleneck channels, output channels, stride, pad) of each
# 1x1 + 3x3 pair.
_EXTRAS: tuple[tuple[str, int, int, int, int], ...] = (
    ("conv8", 256, 512, 2, 1),
    ("conv9", 128, 256, 2, 1),
    ("conv10", 128, 256, 1, 0),
    ("conv11", 128, 256, 1, 0),
)

# Default boxes per location on each source feature map, in source order.
_BOXES: tuple[int, ...] = (4, 6, 6, 6, 4, 4)


def _pool_out_size(size: int, *, ceil: bool) -> int:
    """2x2/2 max pool; SSD's pool3 rounds up so that 75 -> 38."""
    return -(-size // 2) if ceil else size // 2


def ssd300() -> Workload:
    """SSD300 with a VGG-16 backbone on one 300x300x3 image, COCO head (81 classes), 34 edges."""
    ops: list[MatmulOp] = []
    sources: list[tuple[int, int, str]] = []  # (side, channels, product) of each map the heads read
    size, c_in = IMAGE_SIZE, 3
    previous: tuple[str, ...] = ()  # the backbone is a chain: each conv reads the one before
    for block, convs, c_out in _VGG_BLOCKS:
        for i in range(1, convs + 1):
            first = block == 1 and i == 1
            op, size = conv_op(
                f"conv{block}_{i}",
                size,
                c_in,
                c_out,
                3,
                pad=1,
                max_rel_error=SENSITIVE_REL_ERROR if first else 0.1,
                inputs=previous,
            )
            ops.append(op)
            previous = (op.name,)
            c_in = c_out
        if block == 4:
            sources.append((size, c_in, ops[-1].name))  # conv4_3, 38x38
        if block < 5:
            size = _pool_out_size(size, ceil=block == 3)
    size = conv_out_size(size, 3, stride=1, pad=1)  # pool5: 3x3/1, keeps 19x19
    fc6, size = conv_op("conv6", size, c_in, 1024, 3, pad=6, dilation=6, inputs=previous)
    fc7, size = conv_op("conv7", size, 1024, 1024, 1, inputs=(fc6.name,))
    ops += [fc6, fc7]
    previous = (fc7.name,)
    c_in = 1024
    sources.append((size, c_in, fc7.name))  # conv7, 19x19
    for name, mid, c_out, stride, pad in _EXTRAS:
        reduce, _ = conv_op(f"{name}_1", size, c_in, mid, 1, inputs=previous)
        spatial, size = conv_op(
            f"{name}_2", size, mid, c_out, 3, stride=stride, pad=pad, inputs=(reduce.name,)
        )
        ops += [reduce, spatial]
        previous = (spatial.name,)
        c_in = c_out
        sources.append((size, c_in, spatial.name))
    assert [s for s, _, _ in sources] == [38, 19, 10, 5, 3, 1], sources
    for (side, channels, source), boxes in zip(sources, _BOXES, strict=True):
        tag = f"{side}x{side}"
        loc, _ = conv_op(f"head.loc.{tag}", side, channels, boxes * 4, 3, pad=1, inputs=(source,))
        conf, _ = conv_op(
            f"head.conf.{tag}",
            side,
            channels,
            boxes * COCO_CLASSES,
            3,
            pad=1,
            max_rel_error=SENSITIVE_REL_ERROR,
            inputs=(source,),
        )
        ops += [loc, conf]
    return Workload(
        name="ssd300",
        ops=tuple(ops),
        description="SSD300 (Liu et al. 2016), VGG-16 backbone, COCO 81 classes, 300x300x3",
    )
