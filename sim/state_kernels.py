"""Compiled (numba) bookkeeping of :func:`sim.state.step`: the next pose of every agent from its
controlled, placed or kept state, in one pass instead of six ``np.where`` selections (a hot path
of every policy: ~25 µs of dispatch at 128 agents, a few µs here). Pure selection: bits are copied."""
from __future__ import annotations

from drope.jit import jit


@jit
def merge(pos, heading, vel, ctrl_mask, f_pos, f_heading, f_vel, pose_mask, pose, out_pos, out_heading, out_vel):
    """``out_*[b, a]``: ``pose[b, a]`` (x, y, heading, vx, vy) where ``pose_mask``, else the dynamics'
    ``f_*`` where ``ctrl_mask``, else the current state."""
    B, A = heading.shape
    for b in range(B):
        for a in range(A):
            if pose_mask[b, a]:
                out_pos[b, a, 0], out_pos[b, a, 1] = pose[b, a, 0], pose[b, a, 1]
                out_heading[b, a] = pose[b, a, 2]
                out_vel[b, a, 0], out_vel[b, a, 1] = pose[b, a, 3], pose[b, a, 4]
            elif ctrl_mask[b, a]:
                out_pos[b, a, 0], out_pos[b, a, 1] = f_pos[b, a, 0], f_pos[b, a, 1]
                out_heading[b, a] = f_heading[b, a]
                out_vel[b, a, 0], out_vel[b, a, 1] = f_vel[b, a, 0], f_vel[b, a, 1]
            else:
                out_pos[b, a, 0], out_pos[b, a, 1] = pos[b, a, 0], pos[b, a, 1]
                out_heading[b, a] = heading[b, a]
                out_vel[b, a, 0], out_vel[b, a, 1] = vel[b, a, 0], vel[b, a, 1]
