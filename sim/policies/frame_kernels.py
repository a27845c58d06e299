"""Compiled (numba) rigid transform of the map into every world's prediction frame (the learned
policy's batched collation, :func:`sim.policies.predictors.collate_worlds`): one pass instead of
six tensor passes over ``[worlds, segments, points, 2]`` per replan. float64 arithmetic in the
tensor version's operation order, rounded to float32, so the bits are the same."""
from __future__ import annotations

from drope.jit import jit


@jit
def points_to_frames(points, fx, fy, c, s, out):
    """``out[b, i]`` = ``points[i]`` (float32 ``[N, 2]``, scene frame) in world b's frame at
    (``fx[b]``, ``fy[b]``) with heading cos/sin ``c[b]``, ``s[b]`` (float64 ``[B]``)."""
    for b in range(out.shape[0]):
        cb, sb, x0, y0 = c[b], s[b], fx[b], fy[b]
        for i in range(points.shape[0]):
            dx = float(points[i, 0]) - x0
            dy = float(points[i, 1]) - y0
            out[b, i, 0] = cb * dx + sb * dy
            out[b, i, 1] = -sb * dx + cb * dy
