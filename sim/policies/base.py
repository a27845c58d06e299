"""Policy protocol, registry, which agents are controlled, and the two non-reactive baselines."""
from __future__ import annotations

from typing import Protocol

import torch

from drope.data.scene import Scene
from drope.registry import Registry
from drope.sim.state import Actions, SimState

Tensor = torch.Tensor
POLICIES: Registry = Registry("policy")
CONTROLLED: Registry = Registry("controlled agents")


class Policy(Protocol):
    def reset(self, scene: Scene, state: SimState, rng: torch.Generator) -> None: ...

    def act(self, state: SimState, rng: torch.Generator) -> Actions: ...


@CONTROLLED.register("sdc")
def _sdc(scene: Scene) -> Tensor:
    m = torch.zeros(scene.num_agents, dtype=torch.bool)
    m[scene.sdc_index] = True
    return m


@CONTROLLED.register("tracks_to_predict")
def _ttp(scene: Scene) -> Tensor:
    m = torch.zeros(scene.num_agents, dtype=torch.bool)
    m[scene.tracks_to_predict] = True
    m[scene.sdc_index] = True  # the SDC is always driven by the evaluated policy
    return m


@CONTROLLED.register("all")
def _all(scene: Scene) -> Tensor:
    return scene.agent_valid[:, scene.current_index].clone()


def controlled_mask(scene: Scene, which: str) -> Tensor:
    """``[A]`` bool: agents driven by the evaluated policy (``sdc`` | ``tracks_to_predict`` | ``all``),
    restricted to agents valid at the scene's current step."""
    return CONTROLLED.get(which)(scene) & scene.agent_valid[:, scene.current_index]


def log_pose(scene: Scene, t: int) -> Tensor:
    """``[A, 5]`` logged (x, y, heading, vx, vy) at step ``t``."""
    return torch.cat([scene.agent_pos[:, t], scene.agent_heading[:, t, None], scene.agent_vel[:, t]], dim=-1)


@POLICIES.register("log_replay")
class LogReplay:
    """Places every agent at its logged pose (exact, no dynamics); existence follows the log."""

    def __init__(self, dynamics) -> None:
        self.dynamics = dynamics
        self.scene: Scene | None = None

    def reset(self, scene: Scene, state: SimState, rng: torch.Generator) -> None:
        self.scene = scene
        self._pose = torch.cat([scene.agent_pos, scene.agent_heading[..., None], scene.agent_vel], -1)  # [A, T, 5]

    def act(self, state: SimState, rng: torch.Generator) -> Actions:
        t = min(state.step + 1, self.scene.num_steps - 1)
        B, A = state.batch, state.num_agents
        valid = self.scene.agent_valid[:, t].expand(B, A)
        return Actions(ctrl=torch.zeros(B, A, self.dynamics.ctrl_dim), ctrl_mask=torch.zeros(B, A, dtype=torch.bool),
                       pose=self._pose[:, t].expand(B, A, 5), pose_mask=valid, next_valid=valid)


@POLICIES.register("constant_velocity")
class ConstantVelocity:
    """Keeps each agent's velocity and heading, through the dynamics model's tracking controller."""

    def __init__(self, dynamics) -> None:
        self.dynamics = dynamics
        self.dt = 0.1

    def reset(self, scene: Scene, state: SimState, rng: torch.Generator) -> None:
        self.dt = scene.dt

    def act(self, state: SimState, rng: torch.Generator) -> Actions:
        ctrl = self.dynamics.track(state, state.pos + state.vel * self.dt, state.heading, self.dt)
        B, A = state.batch, state.num_agents
        return Actions(ctrl=ctrl, ctrl_mask=state.valid, pose=torch.zeros(B, A, 5),
                       pose_mask=torch.zeros(B, A, dtype=torch.bool), next_valid=state.valid)
