"""The closed-loop rollout engine: R worlds of one scene stepped together.

``run_rollouts`` starts every world at the scene's current step (the logged history before it
is copied), asks the evaluated policy for the controlled agents and the background policy for
the others, and integrates with :func:`sim.state.step` until the last logged step.

Randomness: policies get a :class:`RolloutRng`, a ``torch.Generator`` seeded with the run's
``seed`` (the joint stream, for draws made once for all worlds) whose ``worlds[b]`` is world b's
own generator, seeded by ``(seed, rollout id)``. A policy that draws world b's choices from
``worlds[b]`` makes rollout r of a batched run equal rollout r of a run of that rollout alone
(``rollout_ids=[r]``), so rollouts can be batched or split freely.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from drope.data.scene import Scene
from drope.sim.state import SimState, step

Tensor = torch.Tensor


def rollout_seed(seed: int, rollout: int) -> int:
    """Seed of rollout ``rollout`` of a run seeded ``seed`` (well mixed: neighbouring ids are unrelated streams)."""
    return int(np.random.SeedSequence([int(seed) % 2**64, int(rollout)]).generate_state(1, np.uint64)[0] >> 1)


class RolloutRng(torch.Generator):
    """The joint generator (seeded ``seed``) plus ``worlds``: one generator per rollout id."""

    def __new__(cls, seed: int, rollout_ids: Sequence[int]):
        g = super().__new__(cls)
        g.manual_seed(int(seed))
        g.worlds = [torch.Generator().manual_seed(rollout_seed(seed, r)) for r in rollout_ids]
        return g

    def __init__(self, seed: int, rollout_ids: Sequence[int]) -> None:  # state is set in __new__ (C base class)
        pass


@dataclass(frozen=True)
class Rollouts:
    """Simulated trajectories of one scene over the full time axis (history = the log)."""

    scenario_id: str
    xy: Tensor  # [R, A, T, 2] float32 m, scene frame
    heading: Tensor  # [R, A, T] float32 rad
    vel: Tensor  # [R, A, T, 2] float32 m/s
    valid: Tensor  # [R, A, T] bool
    size: Tensor  # [A, 3] float32 m (length, width, height)
    type: Tensor  # [A] int64 ObjectType
    controlled: Tensor  # [A] bool, driven by the evaluated policy
    start: int  # first simulated step is start + 1
    dt: float
    seed: int

    @property
    def num_rollouts(self) -> int:
        return int(self.xy.shape[0])

    def to_npz(self, path, scene: Scene) -> None:
        """Compact arrays: float32 scene-frame states, the float64 world origin to restore world coordinates."""
        np.savez_compressed(
            path, xy=self.xy.numpy(), heading=self.heading.numpy(), valid=self.valid.numpy(),
            vel=self.vel.numpy().astype(np.float16), size=self.size.numpy(), type=self.type.numpy(),
            agent_id=scene.agent_id.numpy(), controlled=self.controlled.numpy(), start=self.start, dt=self.dt,
            seed=self.seed, origin_xy=scene.origin_xy.numpy(), origin_heading=scene.origin_heading.numpy(),
            scenario_id=self.scenario_id)


def run_rollouts(scene: Scene, policy, background, controlled: Tensor, dynamics, num_rollouts: int = 1,
                 seed: int = 0, steps: int | None = None, rollout_ids: Sequence[int] | None = None) -> Rollouts:
    """Simulate ``num_rollouts`` worlds of ``scene``; ``controlled [A]`` selects the agents of ``policy``.

    Deterministic for a given ``seed`` (a :class:`RolloutRng` drives every random choice).
    ``rollout_ids`` (default ``0 .. num_rollouts-1``) name the worlds' per-rollout streams.
    """
    ids = list(range(num_rollouts)) if rollout_ids is None else [int(r) for r in rollout_ids]
    if len(ids) != num_rollouts:
        raise ValueError(f"rollout_ids has {len(ids)} ids for num_rollouts={num_rollouts}")
    R, A, T = num_rollouts, scene.num_agents, scene.num_steps
    t0 = scene.current_index
    t_end = T - 1 if steps is None else min(T - 1, t0 + steps)
    rng = RolloutRng(seed, ids)
    state = SimState.from_scene(scene, t0, batch=R)
    policy.reset(scene, state, rng)
    if background is not policy:
        background.reset(scene, state, rng)
    xy = scene.agent_pos[None].repeat(R, 1, 1, 1)  # [R, A, T, 2]
    heading = scene.agent_heading[None].repeat(R, 1, 1)
    vel = scene.agent_vel[None].repeat(R, 1, 1, 1)
    valid = scene.agent_valid[None].repeat(R, 1, 1)
    valid[:, :, t0 + 1 :] = False
    take = controlled[None].expand(R, A)
    only_policy = bool(controlled.all()) or background is policy
    for t in range(t0, t_end):
        actions = policy.act(state, rng)
        if not only_policy:
            actions = background.act(state, rng).merge(actions, take)
        state = step(state, actions, dynamics, scene.dt)
        xy[:, :, t + 1], heading[:, :, t + 1], vel[:, :, t + 1] = state.pos, state.heading, state.vel
        valid[:, :, t + 1] = state.valid
    if t_end < T - 1:
        xy, heading, vel, valid = xy[:, :, : t_end + 1], heading[:, :, : t_end + 1], vel[:, :, : t_end + 1], valid[:, :, : t_end + 1]
    return Rollouts(scenario_id=scene.scenario_id, xy=xy, heading=heading, vel=vel, valid=valid, size=state.size[0].clone(),
                    type=scene.agent_type.clone(), controlled=controlled.clone(), start=t0, dt=scene.dt, seed=int(seed))
