"""Typed, batched simulator state and the pure ``step`` function.

Batch axes: B parallel worlds (rollouts of one scene, or padded scenes), A agents. All
tensors are in the scene frame of the :class:`~drope.data.scene.Scene` they come from.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from drope.data.scene import Scene
from drope.sim import state_kernels as kernels

Tensor = torch.Tensor


class SimStateError(ValueError):
    """A SimState or Actions object breaks its shape/dtype contract."""


@dataclass(frozen=True)
class SimState:
    """Agent states of B worlds at one step (frozen: ``step`` returns a new object)."""

    pos: Tensor  # [B, A, 2] float32 m, box centre, scene frame
    heading: Tensor  # [B, A] float32 rad in [-π, π)
    vel: Tensor  # [B, A, 2] float32 m/s, scene frame
    size: Tensor  # [B, A, 3] float32 m (length, width, height); constant over a rollout
    type: Tensor  # [B, A] int64 ObjectType
    valid: Tensor  # [B, A] bool, agent exists at this step
    step: int  # index into the scene's time axis

    @property
    def batch(self) -> int:
        return int(self.pos.shape[0])

    @property
    def num_agents(self) -> int:
        return int(self.pos.shape[1])

    @property
    def speed(self) -> Tensor:
        return self.vel.norm(dim=-1)  # [B, A]

    def replace(self, **kw) -> "SimState":
        return dataclasses.replace(self, **kw)

    def validate(self) -> "SimState":
        B, A = self.pos.shape[:2]
        want = {"pos": ((B, A, 2), torch.float32), "heading": ((B, A), torch.float32),
                "vel": ((B, A, 2), torch.float32), "size": ((B, A, 3), torch.float32),
                "type": ((B, A), torch.int64), "valid": ((B, A), torch.bool)}
        for name, (shape, dtype) in want.items():
            v = getattr(self, name)
            if tuple(v.shape) != shape or v.dtype != dtype:
                raise SimStateError(f"SimState.{name}: got {tuple(v.shape)} {v.dtype}, expected {shape} {dtype}")
        return self

    @classmethod
    def from_scene(cls, scene: Scene, step: int | None = None, batch: int = 1) -> "SimState":
        """State of ``scene`` at ``step`` (default: its current step), repeated over ``batch`` worlds.

        Box sizes come from the current step (sizes of agents invalid there fall back to their
        first valid step, so agents appearing later in a log replay keep a real size).
        """
        t = scene.current_index if step is None else int(step)
        if not 0 <= t < scene.num_steps:
            raise SimStateError(f"scene {scene.scenario_id!r}: step {t} outside [0, {scene.num_steps})")
        first = scene.agent_valid.float().argmax(dim=1)  # [A] first valid step
        size = torch.where(scene.agent_valid[:, t, None], scene.agent_size[:, t],
                           scene.agent_size[torch.arange(scene.num_agents), first])  # [A, 3]

        def rep(x: Tensor) -> Tensor:
            return x.unsqueeze(0).expand(batch, *x.shape).clone()

        return cls(pos=rep(scene.agent_pos[:, t]), heading=rep(scene.agent_heading[:, t]),
                   vel=rep(scene.agent_vel[:, t]), size=rep(size), type=rep(scene.agent_type),
                   valid=rep(scene.agent_valid[:, t]), step=t)


@dataclass(frozen=True)
class Actions:
    """What the policies want at the next step.

    Agents with ``ctrl_mask`` move through the dynamics model with controls ``ctrl``; agents
    with ``pose_mask`` are placed at ``pose`` directly (log replay: exact, no integration
    error); other agents keep their state. ``next_valid`` is the agents' existence at the
    next step (log replay agents appear and disappear with the log).
    """

    ctrl: Tensor  # [B, A, D] float32 dynamics controls
    ctrl_mask: Tensor  # [B, A] bool
    pose: Tensor  # [B, A, 5] float32 (x, y, heading, vx, vy), scene frame
    pose_mask: Tensor  # [B, A] bool
    next_valid: Tensor  # [B, A] bool

    @classmethod
    def hold(cls, state: SimState, ctrl_dim: int) -> "Actions":
        """No-op actions: every agent keeps its state and validity."""
        B, A = state.batch, state.num_agents
        z = torch.zeros(B, A, dtype=torch.bool)
        return cls(ctrl=torch.zeros(B, A, ctrl_dim), ctrl_mask=z, pose=torch.zeros(B, A, 5), pose_mask=z.clone(),
                   next_valid=state.valid.clone())

    def merge(self, other: "Actions", take: Tensor) -> "Actions":
        """``other``'s actions where ``take [B, A]`` is True, else this object's."""
        t2, t3 = take, take[..., None]
        return Actions(ctrl=torch.where(t3, other.ctrl, self.ctrl), ctrl_mask=torch.where(t2, other.ctrl_mask, self.ctrl_mask),
                       pose=torch.where(t3, other.pose, self.pose), pose_mask=torch.where(t2, other.pose_mask, self.pose_mask),
                       next_valid=torch.where(t2, other.next_valid, self.next_valid))


def _full(x: Tensor | np.ndarray, shape: tuple) -> np.ndarray:
    """``x`` as a numpy array of ``shape`` (broadcast where it is smaller, as ``np.where`` would)."""
    a = x.numpy() if isinstance(x, torch.Tensor) else x
    return a if a.shape == shape else np.broadcast_to(a, shape)


def step(state: SimState, actions: Actions, dynamics, dt: float) -> SimState:
    """Advance all worlds by one step (pure: inputs are not modified)."""
    c1 = actions.ctrl_mask.numpy()
    if c1.any():
        pos, heading, vel = dynamics.forward(state, actions.ctrl, dt)  # [B, A, 2], [B, A] wrapped, [B, A, 2]
    else:  # pure log replay: skip the integration (the engine's hot path)
        pos, heading, vel = state.pos, state.heading, state.vel
    B, A = state.batch, state.num_agents
    new_pos, new_heading, new_vel = np.empty((B, A, 2), np.float32), np.empty((B, A), np.float32), np.empty((B, A, 2), np.float32)
    kernels.merge(state.pos.numpy(), state.heading.numpy(), state.vel.numpy(), _full(c1, (B, A)), _full(pos, (B, A, 2)),
                  _full(heading, (B, A)), _full(vel, (B, A, 2)), _full(actions.pose_mask, (B, A)),
                  _full(actions.pose, (B, A, 5)), new_pos, new_heading, new_vel)
    return SimState(pos=torch.from_numpy(new_pos), heading=torch.from_numpy(new_heading), vel=torch.from_numpy(new_vel),
                    size=state.size, type=state.type, valid=actions.next_valid, step=state.step + 1)
