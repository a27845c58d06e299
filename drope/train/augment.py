"""Training-time augmentation for closed-loop use (pure functions of (seed, step, sample)).

A closed-loop policy replanning every second asks the model for predictions at every step of a
scene, from a history it drove itself. Two augmentations bring those inputs into training:

* **current-step shift** (``current_steps``): a training sample's current step is drawn from
  ``current_steps`` (those leaving ``history`` steps and a valid SDC), the scene re-framed to the
  SDC's pose there (as :class:`sim.policies.learned.LearnedPolicy` does); the future after the
  log's end is masked. Without it the model only sees the log's own current step (1.1 s into a
  generated scene), never the situations of seconds 2–8 of a rollout.
* **history perturbation** (``perturb_prob``, ``perturb_lateral_m``, ``perturb_heading_rad``,
  ``perturb_recover_steps``, ``perturb_profile``; on by default, rigid): ChauffeurNet-style. The
  whole history is shifted sideways (in the agent's current frame) by ``δ`` and rotated by ``ψ``,
  fading in from 0 at the history's first step (``perturb_profile="ramp"``) or moved as a whole
  (``"rigid"``: the history looks like a normal drive and only the map shows the agent is off its
  lane, as after closed-loop drift); the target future starts from the perturbed pose and blends
  back to the log over ``perturb_recover_steps``, so the model learns to return to the lane from
  its own small tracking/prediction errors instead of extrapolating them.

Velocities of perturbed histories are recomputed by finite differences, like the data's.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from drope.data.batch import SceneBatch
from drope.data.scene import Scene

Tensor = torch.Tensor


@dataclass
class AugmentConfig:
    current_steps: list = field(default_factory=list)  # candidate current steps; empty: the scene's own
    # defaults: the recipe that keeps the learned policy on its lane closed-loop (README)
    perturb_prob: float = 0.5  # fraction of (valid) agents whose history is perturbed
    perturb_lateral_m: float = 0.5  # std of the sideways offset δ at the current step (m)
    perturb_heading_rad: float = 0.08  # std of the heading offset ψ at the current step (rad)
    perturb_recover_steps: int = 20  # future steps over which the target blends back to the log
    perturb_profile: str = "rigid"  # "rigid": the whole history moves; "ramp": the offset fades in over the history

    def __post_init__(self) -> None:
        if not 0.0 <= self.perturb_prob <= 1.0:
            raise ValueError(f"augment.perturb_prob must be in [0, 1], got {self.perturb_prob}")
        if self.perturb_lateral_m < 0 or self.perturb_heading_rad < 0:
            raise ValueError("augment.perturb_lateral_m / perturb_heading_rad must be >= 0")
        if self.perturb_recover_steps < 1:
            raise ValueError(f"augment.perturb_recover_steps must be >= 1, got {self.perturb_recover_steps}")
        if self.perturb_profile not in ("ramp", "rigid"):
            raise ValueError(f"augment.perturb_profile must be 'ramp' or 'rigid', got {self.perturb_profile!r}")
        if any(int(t) < 0 for t in self.current_steps):
            raise ValueError(f"augment.current_steps must be >= 0, got {list(self.current_steps)}")

    @property
    def perturbs(self) -> bool:
        return self.perturb_prob > 0 and (self.perturb_lateral_m > 0 or self.perturb_heading_rad > 0)


def sample_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """The generator of one training step: batches stay a pure function of (seed, step)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) * 7 + salt)


def usable_steps(scene: Scene, candidates, history: int) -> list[int]:
    """Candidates that leave ``history`` steps, have a later step to predict and a valid SDC."""
    T, i = scene.num_steps, scene.sdc_index
    return [int(t) for t in candidates if history - 1 <= int(t) < T - 1 and bool(scene.agent_valid[i, int(t)])]


def at_step(scene: Scene, t: int) -> Scene:
    """The scene with current step ``t``, re-framed to the SDC's pose at ``t`` (as the simulator
    re-frames its snapshots); ``t`` = the current step returns the scene unchanged."""
    if t == scene.current_index:
        return scene
    snap = dataclasses.replace(scene, current_index=int(t))
    i = scene.sdc_index
    if not bool(scene.agent_valid[i, t]):
        return snap
    origin = snap.to_world_xy(scene.agent_pos[i, t])
    return snap.reframe(origin, float(scene.origin_heading) + float(scene.agent_heading[i, t]))


def _rot(v: Tensor, c: Tensor, s: Tensor) -> Tensor:
    return torch.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], -1)


def finite_difference_velocity(pos: Tensor, valid: Tensor, dt: float) -> Tensor:
    """``[..., H, 2]`` velocities of ``pos`` (central inside valid runs, one-sided at their ends),
    the generator's / log's convention; zero where invalid or isolated."""
    v = valid.float()
    nxt = torch.cat([pos[..., 1:, :], pos[..., -1:, :]], -2)
    prv = torch.cat([pos[..., :1, :], pos[..., :-1, :]], -2)
    vn = torch.cat([valid[..., 1:], torch.zeros_like(valid[..., :1])], -1)
    vp = torch.cat([torch.zeros_like(valid[..., :1]), valid[..., :-1]], -1)
    hi = torch.where(vn[..., None], nxt, pos)
    lo = torch.where(vp[..., None], prv, pos)
    span = (vn.float() + vp.float()).clamp_min(1.0)[..., None] * dt
    out = (hi - lo) / span
    return out * (v[..., None] * (vn | vp).float()[..., None])


def perturb_history(batch: SceneBatch, cfg: AugmentConfig, gen: torch.Generator, dt: float = 0.1) -> SceneBatch:
    """Perturbed copy of ``batch`` (see the module doc); agents not chosen are unchanged."""
    if not cfg.perturbs:
        return batch
    B, A, H, _ = batch.agent_pos.shape
    F = batch.future_pos.shape[2]
    chosen = (torch.rand(B, A, generator=gen) < cfg.perturb_prob) & batch.agent_mask & batch.agent_valid[:, :, -1]
    lat = torch.randn(B, A, generator=gen) * cfg.perturb_lateral_m * chosen
    psi = torch.randn(B, A, generator=gen) * cfg.perturb_heading_rad * chosen
    h0 = batch.agent_heading[:, :, -1]
    p0 = batch.agent_pos[:, :, -1]
    normal = torch.stack([-torch.sin(h0), torch.cos(h0)], -1)  # [B, A, 2]
    # ramp: the offset fades in over the history (0 at its first step, full at the current one), so
    # the history itself bends and tells the model it was perturbed; rigid: the whole history is
    # moved, looks like a normal drive, and only the map shows that the agent is off its lane
    ramp = torch.linspace(0.0, 1.0, H) if cfg.perturb_profile == "ramp" else torch.ones(H)
    hist_ang = psi[..., None] * ramp  # [B, A, H]
    rel = batch.agent_pos - p0[:, :, None]
    c, s = torch.cos(hist_ang), torch.sin(hist_ang)
    pos = p0[:, :, None] + _rot(rel, c, s) + (lat[..., None] * ramp)[..., None] * normal[:, :, None]
    valid = batch.agent_valid
    pos = torch.where(valid[..., None], pos, batch.agent_pos)
    heading = torch.where(valid, batch.agent_heading + hist_ang, batch.agent_heading)
    vel = torch.where(chosen[..., None, None], finite_difference_velocity(pos, valid, dt), batch.agent_vel)
    # future: starts at the perturbed current pose, back on the log after perturb_recover_steps
    w = (1.0 - torch.arange(1, F + 1, dtype=torch.float32) / cfg.perturb_recover_steps).clamp_min(0.0)  # [F]
    new_p0 = pos[:, :, -1]
    f_rel = batch.future_pos - p0[:, :, None]
    fc, fs = torch.cos(psi)[..., None], torch.sin(psi)[..., None]
    f_pert = new_p0[:, :, None] + _rot(f_rel, fc, fs)  # the log's future rigidly attached to the new pose
    wf = w[None, None, :, None]
    fut = wf * f_pert + (1 - wf) * batch.future_pos
    fut_h = batch.future_heading + w * psi[..., None]
    fv = batch.future_valid[..., None]
    return dataclasses.replace(batch, agent_pos=pos, agent_heading=heading, agent_vel=vel,
                               future_pos=torch.where(fv, fut, batch.future_pos),
                               future_heading=torch.where(batch.future_valid, fut_h, batch.future_heading))
