"""Dynamics models: forward integration and inverses that recover expert controls from a log.

Both models are pure functions of a :class:`~sim.state.SimState` and controls ``[B, A, D]``;
``forward`` returns the next (pos, heading wrapped to [-π, π), vel).

* ``delta``: controls (dx, dy, dθ) in the agent's own frame at the start of the step. Exactly
  invertible (any trajectory is reproduced up to float rounding).
* ``bicycle``: kinematic bicycle in curvature form, controls (acceleration m/s², steering
  curvature 1/m; curvature = tan(steer angle) / wheelbase). Semi-implicit update: speed first,
  ``v' = v + a·dt``, travelled distance ``d = v'·dt``, heading ``θ' = θ + κ·d``, the step moves
  along the mean heading ``(θ + θ')/2``. Speed is the signed speed along the heading, so reversing
  is a negative speed. Limits clip acceleration, curvature and speed. Its per-agent arithmetic is
  compiled (:mod:`drope.sim.dynamics_kernels`): in torch it was a quarter of an IDM step.

``track(state, target_pos, target_heading, dt)`` is each model's one-step inverse from the
*current simulated* state to a desired next pose: the expert inverse (applied step by step from
the simulated state, so errors do not accumulate) and the tracking controller of the learned
policy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from drope.registry import Registry
from drope.sim import dynamics_kernels as kernels
from drope.geometry import wrap_angle as wrap
from drope.sim.state import SimState

Tensor = torch.Tensor
DYNAMICS: Registry = Registry("dynamics")


def _rot(v: Tensor, heading: Tensor) -> Tensor:
    """Rotate vectors ``[..., 2]`` by ``heading [...]`` (agent frame → scene frame)."""
    c, s = torch.cos(heading), torch.sin(heading)
    return torch.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], dim=-1)


@dataclass(frozen=True)
class DeltaConfig:
    max_step: float = 10.0  # m per step (≈ 100 m/s at 10 Hz): a guard against runaway policies


@DYNAMICS.register("delta")
class DeltaDynamics:
    ctrl_dim = 3

    def __init__(self, cfg: DeltaConfig = DeltaConfig()) -> None:
        self.cfg = cfg

    def forward(self, state: SimState, ctrl: Tensor, dt: float) -> tuple[Tensor, Tensor, Tensor]:
        d = _rot(ctrl[..., :2], state.heading)  # [B, A, 2] scene-frame displacement
        n = d.norm(dim=-1, keepdim=True)
        d = d * (self.cfg.max_step / n.clamp_min(self.cfg.max_step)).clamp(max=1.0)
        return state.pos + d, wrap(state.heading + ctrl[..., 2]), d / dt

    def track(self, state: SimState, target_pos: Tensor, target_heading: Tensor, dt: float) -> Tensor:
        local = _rot(target_pos - state.pos, -state.heading)  # [B, A, 2]
        return torch.cat([local, wrap(target_heading - state.heading)[..., None]], dim=-1)


@dataclass(frozen=True)
class BicycleConfig:
    max_accel: float = 6.0  # m/s²
    max_decel: float = 10.0  # m/s² (braking limit, positive)
    max_curvature: float = 0.3  # 1/m (≈ 3.3 m turning radius)
    max_speed: float = 40.0  # m/s forward
    max_reverse: float = 5.0  # m/s backward
    min_travel: float = 1e-3  # m per step below which heading cannot change (curvature undefined)


@DYNAMICS.register("bicycle")
class BicycleDynamics:
    ctrl_dim = 2
    position_weight = 0.5  # tracking: 0 reaches the target heading exactly, 1 the target position

    def __init__(self, cfg: BicycleConfig = BicycleConfig()) -> None:
        self.cfg = cfg
        self._cfg = np.zeros(kernels.NUM_CFG)
        self._cfg[[kernels.MAX_ACCEL, kernels.MAX_DECEL, kernels.MAX_CURVATURE, kernels.MAX_SPEED, kernels.MAX_REVERSE,
                   kernels.MIN_TRAVEL, kernels.POSITION_WEIGHT]] = (
            cfg.max_accel, cfg.max_decel, cfg.max_curvature, cfg.max_speed, cfg.max_reverse, cfg.min_travel,
            self.position_weight)

    def forward(self, state: SimState, ctrl: Tensor, dt: float) -> tuple[Tensor, Tensor, Tensor]:
        B, A = state.batch, state.num_agents
        pos, heading, vel = np.empty((B, A, 2), np.float32), np.empty((B, A), np.float32), np.empty((B, A, 2), np.float32)
        kernels.forward(_f32(state.pos), _f32(state.heading), _f32(state.vel), _f32(ctrl, (B, A, 2)), float(dt), self._cfg,
                        pos, heading, vel)
        return torch.from_numpy(pos), torch.from_numpy(heading), torch.from_numpy(vel)

    def track(self, state: SimState, target_pos: Tensor, target_heading: Tensor, dt: float) -> Tensor:
        """Controls that reach ``target_heading`` exactly and the target's distance along the mean
        heading (within the limits). The lateral remainder is not reachable in one step; it stays
        bounded because the next step starts from the simulated, not the logged, pose. The heading
        change blends the one reaching the target heading with twice the bearing of the target
        (the mean heading pointing at it): this damps the heading oscillation of the pure position
        solution and the lateral drift of the pure heading one; reversing aims backwards."""
        B, A = state.batch, state.num_agents
        out = np.empty((B, A, 2), np.float32)
        kernels.track(_f32(state.pos), _f32(state.heading), _f32(state.vel), _f32(target_pos, (B, A, 2)),
                      _f32(target_heading, (B, A)), float(dt), self._cfg, out)
        return torch.from_numpy(out)


def _f32(x: Tensor, shape: tuple | None = None) -> np.ndarray:
    """A C-contiguous float32 numpy view (or copy) of a CPU tensor, broadcast to ``shape``: what the
    kernels are compiled for. (The checks skip torch calls where they are not needed: a hot path.)"""
    if shape is not None and tuple(x.shape) != shape:
        x = x.expand(shape)
    a = x.detach().numpy() if x.requires_grad else x.numpy()
    return a if a.dtype == np.float32 and a.flags.c_contiguous else np.ascontiguousarray(a, dtype=np.float32)


def build_dynamics(name: str, **kw):
    """Dynamics model by registry name with config overrides, e.g. ``build_dynamics("bicycle", max_accel=4)``."""
    cls = DYNAMICS.get(name)
    cfg_cls = {"delta": DeltaConfig, "bicycle": BicycleConfig}[name]
    return cls(cfg_cls(**kw))


def expert_actions(dynamics, scene, agents: Tensor | None = None, start: int | None = None) -> tuple[Tensor, Tensor]:
    """Inverse dynamics over a log: controls ``[A, T', D]`` (T' = steps after ``start``) that the
    forward model turns back into the logged trajectory, and their validity ``[A, T']``.

    Computed sequentially from the simulated state (closed-loop inverse), so errors of the
    model do not accumulate. Agents invalid at ``start`` or at a step get zero controls.
    """
    from drope.sim.state import step as sim_step, Actions

    t0 = scene.current_index if start is None else start
    state = SimState.from_scene(scene, t0)
    T = scene.num_steps
    ctrls, valid = [], []
    for t in range(t0 + 1, T):
        ok = scene.agent_valid[:, t] & scene.agent_valid[:, t - 1]  # [A]
        ctrl = dynamics.track(state, scene.agent_pos[None, :, t], scene.agent_heading[None, :, t], scene.dt)
        ctrl = torch.where(ok[None, :, None], ctrl, torch.zeros_like(ctrl))
        # agents with a gap restart from the log (their control is meaningless there)
        pose = torch.cat([scene.agent_pos[:, t], scene.agent_heading[:, t, None], scene.agent_vel[:, t]], -1)[None]
        act = Actions(ctrl=ctrl, ctrl_mask=ok[None], pose=pose, pose_mask=~ok[None], next_valid=scene.agent_valid[None, :, t])
        state = sim_step(state, act, dynamics, scene.dt)
        ctrls.append(ctrl[0])
        valid.append(ok)
    ctrl = torch.stack(ctrls, 1) if ctrls else torch.zeros(scene.num_agents, 0, dynamics.ctrl_dim)
    v = torch.stack(valid, 1) if valid else torch.zeros(scene.num_agents, 0, dtype=torch.bool)
    if agents is not None:
        ctrl, v = ctrl[agents], v[agents]
    return ctrl, v
