"""The learned policy: replan with a trajectory predictor, follow one mode through the dynamics.

Every ``replan_every`` steps the policy builds a snapshot :class:`Scene` of each world from the
*simulated* history (current step = the simulation step; re-framed to the SDC's current simulated
pose with ``recentre``, as the models are trained) and asks its predictor for K modes per
agent. It keeps, per world and agent, the most likely mode (``mode="max"``) or one drawn from the
mode probabilities with world b's own generator (``mode="sample"``, ``rng.worlds[b]`` of
:class:`sim.rollout.RolloutRng`), and until the next replan
feeds the plan's pose at the matching future step to the dynamics model's tracking controller
(``dynamics.track``), so the agents stay dynamically feasible.

Predictor protocol (:class:`Predictor`): ``predict(scenes)`` takes a list of B Scenes and returns
``(traj, prob)`` with ``traj [B, A, K, F, 2 or 3]`` (x, y[, heading]) in each scene's frame
for the steps after its current step, and ``prob [B, A, K]``, rows aligned with the scenes' agent
indices (A = ``scene.num_agents``; rows of agents not valid at the current step are ignored).
Adapters for the ONNX runtime and the torch model live in :mod:`sim.policies.predictors`; a
predictor may also offer ``predict_worlds(scene, worlds, frames)`` (all worlds collated at once;
``(traj [B, n, K, F, C], prob [B, A, K], rows [n])`` with trajectories in the model's rows, or None
where it does not apply), which the policy then prefers.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch

from drope.data.scene import Scene
from drope.sim.policies.base import POLICIES
from drope.sim.state import Actions, SimState

Tensor = torch.Tensor


class Predictor(Protocol):
    def predict(self, scenes: Sequence[Scene]) -> tuple[Tensor | np.ndarray, Tensor | np.ndarray]: ...


@dataclass(frozen=True)
class LearnedConfig:
    replan_every: int = 10  # steps between predictor calls (10 = 1 Hz at WOMD's 10 Hz)
    mode: str = "max"  # "max": most likely mode; "sample": draw from the mode probabilities
    min_heading_speed: float = 0.5  # m/s: headings derived from plans are held below this speed
    predicted_heading: bool = False  # track the predictor's heading channel instead of the plan's direction of travel
    recentre: bool = True  # predict in the frame of the SDC's current simulated pose (as the model was trained)
    smooth_steps: int = 5  # centred moving average of the plan's per-step displacements (1: off)


def smooth_plan(xy: Tensor, start_xy: Tensor, window: int) -> Tensor:
    """Plan positions ``xy [..., F, 2]`` with their per-step displacements (from ``start_xy [..., 2]``)
    averaged over a centred window of ``window`` steps (shrunk at the ends); ``window <= 1``: unchanged.

    Why: a tracked plan's direction of travel becomes the agent's heading, and the model's per-step
    displacements jitter by a few centimetres, i.e. ±0.05–0.1 rad at urban speeds. The heading
    at the moment of the next replan is then one such jittered sample, the model plans along it,
    and the error compounds into a drift off the lane. Averaging keeps the course of the plan
    (the end point moves by at most the last half-window's jitter).
    """
    if window <= 1:
        return xy
    d = xy - torch.cat([start_xy[..., None, :], xy[..., :-1, :]], dim=-2)  # [..., F, 2]
    F = d.shape[-2]
    half = window // 2
    c = torch.cat([torch.zeros_like(d[..., :1, :]), torch.cumsum(d, dim=-2)], dim=-2)  # prefix sums [..., F+1, 2]
    lo = (torch.arange(F) - half).clamp(0, F)
    hi = (torch.arange(F) + half + 1).clamp(0, F)
    # c[..., hi, :] - c[..., lo, :] as slices: the same subtractions without two gathered copies
    # (a hot path of batched rollouts: [worlds, agents, 80, 2] per replan)
    diff = torch.empty_like(d)
    m0, m1 = min(half, F), max(min(half, F), F - half - 1)  # steps whose window is not clipped: [m0, m1)
    diff[..., m0:m1, :] = c[..., m0 + half + 1 : m1 + half + 1, :] - c[..., m0 - half : m1 - half, :]
    for f in [*range(m0), *range(m1, F)]:  # clipped windows at both ends (<= window steps)
        diff[..., f, :] = c[..., int(hi[f]), :] - c[..., int(lo[f]), :]
    mean = diff / (hi - lo).to(d.dtype)[:, None]
    return start_xy[..., None, :] + torch.cumsum(mean, dim=-2)


def plan_headings(xy: Tensor, start_heading: Tensor, start_xy: Tensor, min_step: float) -> Tensor:
    """Headings ``[..., F]`` from planned positions ``xy [..., F, 2]``: direction of travel, held
    where a step is shorter than ``min_step`` (standing agents keep their heading)."""
    prev = torch.cat([start_xy[..., None, :], xy[..., :-1, :]], dim=-2)
    d = xy - prev
    moving = d.norm(dim=-1) > min_step
    h = torch.atan2(d[..., 1], d[..., 0])
    # forward fill: step f takes the heading of the last moving step <= f (column 0: the start heading)
    F = xy.shape[-2]
    filled = torch.cat([start_heading.to(h.dtype).expand(h.shape[:-1])[..., None], h], dim=-1)  # [..., F+1]
    src = torch.where(moving, torch.arange(1, F + 1), 0).cummax(dim=-1).values  # [..., F]
    return filled.gather(-1, src)


@POLICIES.register("learned")
class LearnedPolicy:
    def __init__(self, dynamics, predictor: Predictor, cfg: LearnedConfig = LearnedConfig()) -> None:
        if cfg.mode not in ("max", "sample"):
            raise ValueError(f"learned policy: mode must be 'max' or 'sample', got {cfg.mode!r}")
        if cfg.smooth_steps < 1:
            raise ValueError(f"learned policy: smooth_steps must be >= 1, got {cfg.smooth_steps}")
        if cfg.replan_every < 1:
            raise ValueError(f"learned policy: replan_every must be >= 1, got {cfg.replan_every}")
        self.dynamics, self.predictor, self.cfg = dynamics, predictor, cfg
        self.num_predictions = 0

    def reset(self, scene: Scene, state: SimState, rng: torch.Generator) -> None:
        B = state.batch
        self.scene = scene
        self.start = state.step
        # simulated history per world, seeded with the log up to the start step
        self.h_xy = scene.agent_pos[None].repeat(B, 1, 1, 1)  # [B, A, T, 2]
        self.h_heading = scene.agent_heading[None].repeat(B, 1, 1)  # [B, A, T]
        self.h_vel = scene.agent_vel[None].repeat(B, 1, 1, 1)
        self.h_valid = scene.agent_valid[None].repeat(B, 1, 1)
        self.h_valid[:, :, state.step + 1 :] = False
        self.plan_xy: Tensor | None = None  # [B, A, F, 2]
        self.plan_heading: Tensor | None = None  # [B, A, F]
        self.plan_step = state.step
        self.num_predictions = 0

    def observe(self, state: SimState) -> None:
        """Record the current state into the rolling history the next replan reads."""
        t = state.step
        self.h_xy[:, :, t], self.h_heading[:, :, t], self.h_vel[:, :, t] = state.pos, state.heading, state.vel
        self.h_valid[:, :, t] = state.valid
        self.h_valid[:, :, t + 1 :] = False

    def frames(self, state: SimState) -> Tensor:
        """``[B, 3]`` float64 pose (x, y, heading) in the scene frame of each world's prediction frame:
        the SDC's current simulated pose with ``recentre`` (models are trained SDC-centred), else identity."""
        out = torch.zeros(state.batch, 3, dtype=torch.float64)
        i = self.scene.sdc_index
        if self.cfg.recentre and 0 <= i < state.num_agents:
            ok = state.valid[:, i]
            out[ok, :2] = state.pos[ok, i].double()
            out[ok, 2] = state.heading[ok, i].double()
        return out

    def snapshots(self, state: SimState, frames: Tensor | None = None) -> list[Scene]:
        """One Scene per world whose history is the simulated one and whose current step is ``state.step``,
        expressed in the frame ``frames[b]`` (re-framed through float64 world coordinates)."""
        size = state.size[:, :, None].expand(-1, -1, self.scene.num_steps, -1)
        out = []
        for b in range(state.batch):
            snap = dataclasses.replace(self.scene, agent_pos=self.h_xy[b] * self.h_valid[b, ..., None],
                                       agent_heading=self.h_heading[b] * self.h_valid[b],
                                       agent_vel=self.h_vel[b] * self.h_valid[b, ..., None], agent_valid=self.h_valid[b].clone(),
                                       agent_size=size[b].contiguous(), current_index=state.step)
            if frames is not None and bool(frames[b].any()):
                origin = snap.to_world_xy(frames[b, :2])
                snap = snap.reframe(origin, float(snap.origin_heading) + float(frames[b, 2]))
            out.append(snap)
        return out

    def _replan(self, state: SimState, rng: torch.Generator) -> None:
        frames = self.frames(state)
        fast = getattr(self.predictor, "predict_worlds", None)
        size = state.size
        out = fast(self.scene, (self.h_xy, self.h_heading, self.h_vel, self.h_valid, size, state.step), frames) if fast else None
        B, A = state.batch, state.num_agents
        if out is not None:  # trajectories in the model's rows: agent rows[j] is row j
            traj, prob, rows = out
            rows = torch.as_tensor(rows, dtype=torch.int64)
        else:
            traj, prob = self.predictor.predict(self.snapshots(state, frames))
            rows = torch.arange(A)
        traj = torch.as_tensor(np.asarray(traj) if not isinstance(traj, Tensor) else traj)
        prob = torch.as_tensor(np.asarray(prob) if not isinstance(prob, Tensor) else prob, dtype=torch.float32)
        if (traj.dim() != 5 or tuple(traj.shape[:2]) != (B, len(rows)) or traj.shape[-1] not in (2, 3)
                or tuple(prob.shape) != (B, A, traj.shape[2])):
            raise ValueError(f"predictor returned traj {tuple(traj.shape)} / prob {tuple(prob.shape)}; expected "
                             f"[B={B}, A={A}, K, F, 2|3] and [B, A, K]")
        # a sum is finite only if every element is (NaN/Inf propagate): one pass, no [B, A, K, F, C]
        # mask; the element-wise check runs only to name the culprit (or where a sum overflowed)
        finite = bool(torch.isfinite(traj.sum())) and bool(torch.isfinite(prob.sum()))
        if not finite and not (bool(torch.isfinite(traj).all()) and bool(torch.isfinite(prob).all())):
            bad = torch.zeros(B, A, dtype=torch.bool)
            bad[:, rows] = ~torch.isfinite(traj).flatten(2).all(-1)
            b, a = (bad | ~torch.isfinite(prob).all(-1)).nonzero()[0].tolist()
            raise ValueError(f"scenario {self.scene.scenario_id}: the predictor returned NaN/Inf at step {state.step} "
                             f"(world {b}, object {int(self.scene.agent_id[a])})")
        if self.cfg.mode == "max":
            k = prob.argmax(-1)  # [B, A]
        else:
            p = prob.clamp_min(0) + 1e-12
            p = p / p.sum(-1, keepdim=True)  # [B, A, K]
            # world b draws from its own stream: a rollout's modes do not depend on the batch it runs in
            worlds = getattr(rng, "worlds", None) or [rng] * B
            k = torch.stack([torch.multinomial(p[b], 1, generator=worlds[b])[:, 0] for b in range(B)])
        # only the chosen mode of the agents the model saw (the valid ones) leaves the model's rows and
        # the prediction frame; the others cannot move (their controls are masked) and hold their pose
        kr = k[:, rows]
        traj = traj.gather(2, kr[:, :, None, None, None].expand(B, len(rows), 1, *traj.shape[3:]))[:, :, 0].double()
        # prediction frame → scene frame (rigid transform by each world's frame pose)
        c, s = torch.cos(frames[:, 2]).view(B, 1, 1), torch.sin(frames[:, 2]).view(B, 1, 1)
        x, y = traj[..., 0], traj[..., 1]
        xy = torch.stack([c * x - s * y + frames[:, 0].view(B, 1, 1), s * x + c * y + frames[:, 1].view(B, 1, 1)], -1)
        if traj.shape[-1] == 3:
            xy = torch.cat([xy, (traj[..., 2:] + frames[:, 2].view(B, 1, 1, 1) + torch.pi) % (2 * torch.pi) - torch.pi], -1)
        chosen = xy.float()  # [B, n, F, 2|3]
        start_xy, start_h = state.pos[:, rows], state.heading[:, rows]
        plan_xy = smooth_plan(chosen[..., :2], start_xy, self.cfg.smooth_steps)
        if chosen.shape[-1] == 3 and self.cfg.predicted_heading:
            plan_h = chosen[..., 2]
        else:
            plan_h = plan_headings(plan_xy, start_h, start_xy, self.cfg.min_heading_speed * self.scene.dt)
        F = plan_xy.shape[2]
        self.plan_xy = state.pos[:, :, None].expand(B, A, F, 2).clone()
        self.plan_xy[:, rows] = plan_xy
        self.plan_heading = state.heading[:, :, None].expand(B, A, F).clone()
        self.plan_heading[:, rows] = plan_h
        self.plan_step = state.step
        self.num_predictions += 1

    def act(self, state: SimState, rng: torch.Generator) -> Actions:
        self.observe(state)
        if self.plan_xy is None or (state.step - self.start) % self.cfg.replan_every == 0:
            self._replan(state, rng)
        j = min(state.step - self.plan_step, self.plan_xy.shape[2] - 1)  # plan index of step t + 1
        ctrl = self.dynamics.track(state, self.plan_xy[:, :, j], self.plan_heading[:, :, j], self.scene.dt)
        B, A = state.batch, state.num_agents
        return Actions(ctrl=ctrl, ctrl_mask=state.valid, pose=torch.zeros(B, A, 5),
                       pose_mask=torch.zeros(B, A, dtype=torch.bool), next_valid=state.valid)
