"""Winner-takes-all Laplace loss for multi-modal trajectories (pure function)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from drope.geometry import rotate_into_frame, wrap_angle_smooth

Tensor = torch.Tensor


@dataclass
class LossWeights:
    nll: float = 1.0
    heading: float = 0.5
    cls: float = 0.5


def targets_in_agent_frame(future_pos: Tensor, future_heading: Tensor, pos_now: Tensor, heading_now: Tensor):
    """Scene-frame futures ``[B,A,F,2]``/``[B,A,F]`` → each agent's frame at the current step."""
    c, s = torch.cos(heading_now)[..., None], torch.sin(heading_now)[..., None]
    xy = rotate_into_frame(future_pos - pos_now[:, :, None], c, s)
    dh = future_heading - heading_now[..., None]
    return xy, wrap_angle_smooth(dh)


def wta_loss(traj: Tensor, scale: Tensor, logits: Tensor, gt_xy: Tensor, gt_h: Tensor, valid: Tensor,
             w: LossWeights = LossWeights()) -> dict[str, Tensor]:
    """``traj [B,A,K,F,3]``, ``scale [B,A,K,F,2]``, ``logits [B,A,K]``, ``gt_xy [B,A,F,2]``,
    ``gt_h [B,A,F]``, ``valid [B,A,F]`` (False for padding, invalid agents and missing steps).

    The best mode (lowest average displacement over valid steps) gets the Laplace NLL and the
    heading term; the mode classifier learns to pick it.
    """
    vf = valid.to(traj.dtype)  # [B, A, F]
    has = vf.sum(-1) > 0  # [B, A]
    n_steps = vf.sum(-1).clamp_min(1.0)
    err = (traj[..., :2] - gt_xy[:, :, None]).norm(dim=-1)  # [B, A, K, F]
    ade = (err * vf[:, :, None]).sum(-1) / n_steps[..., None]  # [B, A, K]
    best = ade.argmin(-1)  # [B, A]
    idx = best[..., None, None, None]
    bt = traj.gather(2, idx.expand(-1, -1, 1, *traj.shape[3:])).squeeze(2)  # [B, A, F, 3]
    bs = scale.gather(2, idx.expand(-1, -1, 1, *scale.shape[3:])).squeeze(2)  # [B, A, F, 2]
    nll = (torch.log(2 * bs) + (bt[..., :2] - gt_xy).abs() / bs).sum(-1)  # [B, A, F]
    head = 1 - torch.cos(bt[..., 2] - gt_h)
    n_agents = has.sum().clamp_min(1)
    denom = vf.sum().clamp_min(1.0)
    l_nll = (nll * vf).sum() / denom
    l_head = (head * vf).sum() / denom
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), best.reshape(-1), reduction="none").reshape(best.shape)
    l_cls = (ce * has).sum() / n_agents
    total = w.nll * l_nll + w.heading * l_head + w.cls * l_cls
    min_ade = (ade.min(-1).values * has).sum() / n_agents
    return {"loss": total, "nll": l_nll.detach(), "heading": l_head.detach(), "cls": l_cls.detach(),
            "min_ade": min_ade.detach()}
