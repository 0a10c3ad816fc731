"""IR drop from the resistive lines themselves: an exact nodal solve and a line model.

Covers: :func:`nodal_solve` (the exact bit-line currents of one array whose word and bit
lines have a wire resistance per cell pitch, by sparse nodal analysis),
:func:`line_model` (the same currents by relaxing whole lines in turn, each line solved
exactly as the tridiagonal chain it is: ``O(rows cols)`` a sweep, no matrix of the whole
network), :func:`network_attenuation` (the share of each programmed cell's current that
arrives, from the block's own conductances: what a device with a ``wire_resistance`` bakes
into its cells) and :func:`output_loss` (the relative loss either gives). Does not cover:
the default read path's fixed attenuation (:func:`~sedma.compute.crossbar.physics.ir_attenuation`)
or applying either to cells (see :mod:`sedma.compute.crossbar.cells`).

The network (A. Chen, IEEE TED 60(4), 1022-1029, 2013; as CrossSim and MemTorch solve it):
row ``i``'s word line is driven at ``V_i`` through the wire at its column-0 end and has
a node at every column; column ``j``'s bit line is held at virtual ground at its row-0 end
and has a node at every row; the cell ``(i, j)`` of conductance ``G_ij`` joins the two
nodes; every segment of either line between neighbouring nodes (and from the driver or
the sense amplifier to the first node) has resistance ``r``. The output of column ``j`` is
the current its bit line delivers to ground. Because the network is linear the outputs are
linear in the inputs, but the share of current lost depends on which rows are driven, on
every conductance of the array, and on its size: ``rows x cols`` cells load lines of
``rows`` and ``cols`` segments.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.sparse.linalg import spsolve

from sedma.arrays import F64
from sedma.errors import SpecError

__all__ = ["line_model", "network_attenuation", "nodal_solve", "output_loss"]


def _check(g: F64, v: F64, r_wire: float) -> None:
    if g.ndim != 2 or v.shape != (g.shape[0],):
        raise SpecError(f"g has shape {g.shape}, v {v.shape}; allowed: (rows, cols) and (rows,)")
    if not r_wire >= 0:
        raise SpecError(f"r_wire = {r_wire!r}; allowed: a resistance >= 0")


def nodal_solve(g: npt.ArrayLike, v: npt.ArrayLike, r_wire: float) -> F64:
    """Bit-line output currents ``(cols,)`` of the network (module doc), solved exactly.

    Kirchhoff's current law at the ``2 rows cols`` nodes (word-line node ``w_ij``, bit-line
    node ``b_ij``) gives ``L u = s`` with ``L`` the conductance Laplacian of the network
    (``1 / r`` per segment, ``G_ij`` per cell; the driver and ground as fixed potentials)
    and ``s`` the drivers' currents ``V_i / r`` into ``w_i0``; the output of column ``j``
    is ``b_0j / r``. Solved by sparse LU (``scipy.sparse.linalg.spsolve``). ``r_wire = 0``
    gives the ideal ``V @ G``.
    """
    ga, va = np.asarray(g, dtype=np.float64), np.asarray(v, dtype=np.float64)
    _check(ga, va, r_wire)
    if r_wire == 0:
        return np.asarray(va @ ga, dtype=np.float64)
    rows, cols = int(ga.shape[0]), int(ga.shape[1])
    gw = 1.0 / r_wire
    n = rows * cols

    def w(i: int, j: int) -> int:
        return i * cols + j

    def b(i: int, j: int) -> int:
        return n + i * cols + j

    r_idx: list[int] = []
    c_idx: list[int] = []
    vals: list[float] = []

    def link(p: int, q: int, cond: float) -> None:
        r_idx.extend((p, q, p, q))
        c_idx.extend((p, q, q, p))
        vals.extend((cond, cond, -cond, -cond))

    def ground(p: int, cond: float) -> None:
        r_idx.append(p)
        c_idx.append(p)
        vals.append(cond)

    rhs = np.zeros(2 * n)
    for i in range(rows):
        ground(w(i, 0), gw)  # the driver: a fixed potential V_i behind one segment
        rhs[w(i, 0)] += va[i] * gw
        for j in range(cols):
            if j + 1 < cols:
                link(w(i, j), w(i, j + 1), gw)
            if i + 1 < rows:
                link(b(i, j), b(i + 1, j), gw)
            link(w(i, j), b(i, j), float(ga[i, j]))
    for j in range(cols):
        ground(b(0, j), gw)  # the sense amplifier: virtual ground behind one segment
    lap = sparse.csr_array((vals, (r_idx, c_idx)), shape=(2 * n, 2 * n))
    u = spsolve(lap.tocsc(), rhs)
    return np.asarray(u[n : n + cols], dtype=np.float64) * gw  # b_0j / r


def _thomas(lower: float, diag: F64, upper: F64, rhs: F64) -> F64:
    """Solve tridiagonal systems along axis 1 (one per row of ``diag``), Thomas' algorithm.

    Row ``k`` of system ``t``: ``lower x[k-1] + diag[t, k] x[k] + upper[k] x[k+1] =
    rhs[t, k]`` (``lower`` the same everywhere, ``upper[-1]`` unused).
    """
    n = diag.shape[1]
    c = np.empty_like(diag)
    d = np.empty_like(rhs)
    c[:, 0] = upper[0] / diag[:, 0]
    d[:, 0] = rhs[:, 0] / diag[:, 0]
    for k in range(1, n):
        m = diag[:, k] - lower * c[:, k - 1]
        c[:, k] = upper[k] / m
        d[:, k] = (rhs[:, k] - lower * d[:, k - 1]) / m
    x = np.empty_like(rhs)
    x[:, -1] = d[:, -1]
    for k in range(n - 2, -1, -1):
        x[:, k] = d[:, k] - c[:, k] * x[:, k + 1]
    return x


def _relax(g: F64, v: F64, r_wire: float, leads: tuple[int, int], sweeps: int, tol: float) -> F64:
    """Bit-line outputs ``(B, cols)`` of the network of ``g`` for the inputs ``v`` (B, rows).

    ``leads``: wire segments between the driver and the first word-line node, and between
    ground and the first bit-line node (1 each for a bare array). See :func:`line_model`.
    """
    rows, cols = g.shape
    batch = v.shape[0]
    gw = 1.0 / r_wire
    g_lead_w, g_lead_b = gw / leads[0], gw / leads[1]
    up_w = np.full(cols, -gw)
    up_w[-1] = 0.0
    diag_w = g + np.where(np.arange(cols) < cols - 1, 2 * gw, gw)[None, :]
    diag_w[:, 0] += g_lead_w - gw
    up_b = np.full(rows, -gw)
    up_b[-1] = 0.0
    diag_b = g + np.where(np.arange(rows) < rows - 1, 2 * gw, gw)[:, None]
    diag_b[0, :] += g_lead_b - gw
    dw = np.broadcast_to(diag_w, (batch, rows, cols)).reshape(batch * rows, cols)
    db = np.broadcast_to(diag_b.T, (batch, cols, rows)).reshape(batch * cols, rows)
    b = np.zeros((batch, rows, cols))
    w = np.repeat(v[:, :, None], cols, axis=2)
    scale = max(float(np.max(np.abs(v))), 1e-300)
    for _ in range(sweeps):
        rhs = g[None] * b
        rhs[:, :, 0] += g_lead_w * v
        w_new = _thomas(-gw, dw, up_w, rhs.reshape(batch * rows, cols)).reshape(w.shape)
        rhs_b = (g[None] * w_new).transpose(0, 2, 1).reshape(batch * cols, rows)
        b_new = _thomas(-gw, db, up_b, rhs_b).reshape(batch, cols, rows).transpose(0, 2, 1)
        moved = max(float(np.max(np.abs(w_new - w))), float(np.max(np.abs(b_new - b))))
        w, b = w_new, b_new
        if moved <= tol * scale:
            break
    return np.asarray(b[:, 0, :] * g_lead_b, dtype=np.float64)


def line_model(
    g: npt.ArrayLike, v: npt.ArrayLike, r_wire: float, sweeps: int = 50, tol: float = 1e-10
) -> F64:
    """Bit-line output currents ``(cols,)`` by relaxing the lines one whole line at a time.

    With the bit-line nodes held, each word line is a chain of segments ``1/r`` loaded by
    its cells to the held potentials: Kirchhoff's law along it is tridiagonal,
    ``-w_{j-1}/r + (2/r + G_ij) w_j - w_{j+1}/r = G_ij b_ij`` (the driver ``V_i`` behind the
    first segment, the far end open), solved exactly (Thomas' algorithm); then each bit
    line the same way with the word lines held (ground behind its first segment).
    Alternating the two (block Gauss-Seidel on the network's equations; the line-by-line
    relaxation of Chen 2013) converges to :func:`nodal_solve`'s solution for any wire
    resistance, the matrix being an M-matrix; ``O(rows cols)`` a sweep. The first sweep
    from ``b = 0`` is the word lines' drop alone. Stops when no node moves by more than
    ``tol`` times the largest input.
    """
    ga, va = np.asarray(g, dtype=np.float64), np.asarray(v, dtype=np.float64)
    _check(ga, va, r_wire)
    if isinstance(sweeps, bool) or not isinstance(sweeps, int) or sweeps < 1:
        raise SpecError(f"sweeps = {sweeps!r}; allowed: an integer >= 1")
    if r_wire == 0:
        return np.asarray(va @ ga, dtype=np.float64)
    return np.asarray(_relax(ga, va[None, :], r_wire, (1, 1), sweeps, tol)[0], dtype=np.float64)


def network_attenuation(
    g_pos: F64, g_neg: F64, r_wire: float, row0: int = 0, col0: int = 0, chunk: int = 16
) -> tuple[F64, F64]:
    """Per-cell share of current that arrives, ``(h, w)`` for each cell of the pairs.

    The block's cells sit at rows ``row0..`` and cell columns ``2 col0..`` of their array
    (``g+`` of pair ``j`` in cell column ``2j``, ``g-`` in ``2j + 1``); the lines reach them
    through ``2 col0`` and ``row0`` more segments (the cells between are not loaded: only
    this block's rows are driven and its columns sensed). The network is linear, so its
    outputs for any input are ``V @ M`` with ``M[i]`` the outputs for row ``i`` alone at
    1 V (:func:`line_model`'s relaxation, batched over the rows); ``M[i, c] / G_ic`` is
    the share of cell ``(i, c)``'s current that reaches the sense amplifier (a cell of no
    conductance gets 1). What is lost depends on every conductance of the block and on
    its size and place in the array; sneak currents into other columns are dropped.
    """
    h, w = g_pos.shape
    cells = np.empty((h, 2 * w))
    cells[:, 0::2], cells[:, 1::2] = g_pos, g_neg
    if r_wire == 0:
        return np.ones_like(g_pos), np.ones_like(g_neg)
    resp = np.empty_like(cells)
    eye = np.eye(h)
    for r0 in range(0, h, chunk):
        resp[r0 : r0 + chunk] = _relax(
            cells, eye[r0 : r0 + chunk], r_wire, (2 * col0 + 1, row0 + 1), 50, 1e-9
        )
    att = np.where(cells > 1e-9, resp / np.maximum(cells, 1e-9), 1.0)
    att = np.clip(att, 0.0, 1.0)
    return att[:, 0::2], att[:, 1::2]


def output_loss(got: F64, ideal: F64) -> float:
    """Relative loss of output current: ``1 - sum(got) / sum(ideal)``."""
    total = float(np.sum(ideal))
    return 1.0 - float(np.sum(got)) / total if total else 0.0
