"""Pedestrians: a social-force walker (Helbing & Molnár 1995, simplified), pure numpy.

``social_force_acceleration(pos, vel, goal, v_desired, obstacles=None, params)`` relaxes each
pedestrian's velocity towards ``v_desired`` in the direction of its goal and pushes it away
from other pedestrians (now and at their predicted closest approach) and from obstacle points (e.g. vehicle box centres) with an exponential
repulsion. The result is clipped to ``params.a_max``. The generator walks pedestrians along
sidewalk paths with IDM (``drope.sim.generate.microsim``); this model is for free walking in the
closed-loop simulator, where WOMD scenes have no sidewalk graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PedestrianParams:
    tau: float = 0.5  # velocity relaxation time, s
    a_max: float = 1.5  # m/s²
    radius: float = 0.35  # body radius, m
    repulsion: float = 2.5  # repulsion strength at contact, m/s²
    range_m: float = 0.6  # repulsion decay length, m
    obstacle_radius: float = 1.2  # extra clearance kept from obstacle points, m
    horizon: float = 3.0  # anticipation horizon, s


def social_force_acceleration(pos, vel, goal, v_desired, obstacles=None,
                              p: PedestrianParams = PedestrianParams()) -> np.ndarray:
    """Accelerations ``[N, 2]`` for pedestrians at ``pos [N, 2]`` with ``vel [N, 2]`` heading
    to ``goal [N, 2]`` at speed ``v_desired [N]``; ``obstacles [M, 2]`` are points to avoid."""
    pos, vel, goal = (np.asarray(x, np.float64).reshape(-1, 2) for x in (pos, vel, goal))
    to_goal = goal - pos  # [N, 2]
    dist = np.linalg.norm(to_goal, axis=-1, keepdims=True)
    # slow down over the last metre so pedestrians stop at the goal instead of oscillating
    speed = np.asarray(v_desired, np.float64).reshape(-1, 1) * np.minimum(dist, 1.0)
    desired = to_goal / np.maximum(dist, 1e-9) * speed
    acc = (desired - vel) / p.tau
    # anticipation: repel from where the other will be at the closest approach within `horizon`
    # seconds, so walkers on a collision course sidestep early instead of pushing head-on
    diff = pos[:, None, :] - pos[None, :, :]  # [N, N, 2] from j to i
    rv = vel[:, None, :] - vel[None, :, :]  # [N, N, 2]
    t_star = np.clip(-(diff * rv).sum(-1) / np.maximum((rv * rv).sum(-1), 1e-9), 0.0, p.horizon)  # [N, N]
    future = diff + rv * t_star[..., None]
    d = np.linalg.norm(diff, axis=-1)
    d_f = np.linalg.norm(future, axis=-1)
    np.fill_diagonal(d, np.inf)
    np.fill_diagonal(d_f, np.inf)
    push = p.repulsion * np.exp((2 * p.radius - d) / p.range_m)  # [N, N] now
    push_f = p.repulsion * np.exp((2 * p.radius - d_f) / p.range_m) * np.exp(-t_star / p.horizon)  # later
    acc += (push[..., None] * diff / np.maximum(d, 1e-9)[..., None]).sum(1)
    acc += (push_f[..., None] * future / np.maximum(d_f, 1e-9)[..., None]).sum(1)
    if obstacles is not None and len(obstacles):
        ob = np.asarray(obstacles, np.float64).reshape(-1, 2)
        diff = pos[:, None, :] - ob[None]  # [N, M, 2]
        d = np.linalg.norm(diff, axis=-1)
        push = p.repulsion * np.exp((p.radius + p.obstacle_radius - d) / p.range_m)
        acc += (push[..., None] * diff / np.maximum(d, 1e-9)[..., None]).sum(1)
    norm = np.linalg.norm(acc, axis=-1, keepdims=True)
    return acc * np.minimum(1.0, p.a_max / np.maximum(norm, 1e-12))
