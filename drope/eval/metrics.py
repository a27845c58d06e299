"""Open-loop forecasting metrics (pure functions over flat per-agent tensors).

minADE/minFDE over the K most likely modes (K = 1 and 6), miss rate at 2 m, WOMD's
speed-scaled miss rate (longitudinal/lateral thresholds in the ground truth's frame at the final
step, scaled by the current speed), Brier-minFDE (minFDE + (1 − p_best)²), per object type and
horizon (3/5/8 s = 30/50/80 steps at 10 Hz). Overlap rate and mAP need the other agents' boxes:
they come from ``drope.metrics.motion`` (WOMD-official), not from here.
"""
from __future__ import annotations

import torch

from drope.data.types import ObjectType

Tensor = torch.Tensor
HORIZONS = {"3s": 30, "5s": 50, "8s": 80}
# WOMD motion-metrics miss thresholds (lateral, longitudinal) in metres per horizon step count
WOMD_MISS_THRESHOLDS = {30: (1.0, 2.0), 50: (1.8, 3.6), 80: (3.0, 6.0)}


def speed_scale(speed: Tensor, low: float = 1.4, high: float = 11.0) -> Tensor:
    """WOMD's threshold scale: 0.5 below ``low`` m/s, 1 above ``high``, linear in between."""
    return (0.5 + 0.5 * (speed - low) / (high - low)).clamp(0.5, 1.0)
TYPES = (ObjectType.TYPE_VEHICLE, ObjectType.TYPE_PEDESTRIAN, ObjectType.TYPE_CYCLIST)


def displacement_metrics(pred: Tensor, prob: Tensor, gt: Tensor, valid: Tensor, k: int, horizon: int,
                         miss_threshold: float = 2.0, gt_heading: Tensor | None = None,
                         speed: Tensor | None = None) -> dict[str, Tensor]:
    """Per-agent metrics ``[N]`` for ``pred [N,K,F,2]``, ``prob [N,K]``, ``gt [N,F,2]``, ``valid [N,F]``.

    FDE uses the last valid step within the horizon; agents with no valid step there get NaN.
    With ``gt_heading [N,F]`` and current ``speed [N]`` the WOMD speed-scaled miss rate
    (``womd_miss_rate``) is added for horizons listed in ``WOMD_MISS_THRESHOLDS``.
    """
    order = prob.argsort(-1, descending=True)[:, :k]  # [N, k]
    p = pred.gather(1, order[..., None, None].expand(-1, -1, *pred.shape[2:]))[:, :, :horizon]
    pk = prob.gather(1, order)
    v = valid[:, :horizon]
    g = gt[:, :horizon]
    err = (p - g[:, None]).norm(dim=-1)  # [N, k, h]
    n = v.sum(-1)
    ade = (err * v[:, None]).sum(-1) / n.clamp_min(1)[:, None]
    last = torch.where(v, torch.arange(v.shape[1], device=v.device), -1).max(-1).values  # [N]
    fde = err.gather(2, last.clamp_min(0)[:, None, None].expand(-1, err.shape[1], 1))[..., 0]  # [N, k]
    min_fde, best = fde.min(-1)
    nan = torch.full_like(min_fde, float("nan"))
    ok = n > 0
    out = {}
    if gt_heading is not None and speed is not None and horizon in WOMD_MISS_THRESHOLDS:
        lat_t, lon_t = WOMD_MISS_THRESHOLDS[horizon]
        sc = speed_scale(speed)  # [N]
        li = last.clamp_min(0)
        d = p.gather(2, li[:, None, None, None].expand(-1, p.shape[1], 1, 2))[:, :, 0] - g.gather(
            1, li[:, None, None].expand(-1, 1, 2))  # [N, k, 2] final-step error, scene frame
        h = gt_heading.gather(1, li[:, None])  # [N, 1]
        lon = d[..., 0] * torch.cos(h) + d[..., 1] * torch.sin(h)
        lat = -d[..., 0] * torch.sin(h) + d[..., 1] * torch.cos(h)
        hit = (lon.abs() <= lon_t * sc[:, None]) & (lat.abs() <= lat_t * sc[:, None])  # [N, k]
        out["womd_miss_rate"] = torch.where(ok, (~hit.any(-1)).float(), nan)
    return out | {
        "min_ade": torch.where(ok, ade.min(-1).values, nan),
        "min_fde": torch.where(ok, min_fde, nan),
        "miss_rate": torch.where(ok, (min_fde > miss_threshold).float(), nan),
        "brier_min_fde": torch.where(ok, min_fde + (1 - pk.gather(1, best[:, None])[:, 0]) ** 2, nan),
    }


def summarize(pred: Tensor, prob: Tensor, gt: Tensor, valid: Tensor, types: Tensor,
              gt_heading: Tensor | None = None, speed: Tensor | None = None) -> dict:
    """Nested ``{type: {horizon: {metric@K: value}}}`` plus ``"ALL"``; None where no agents."""
    out: dict = {}
    groups = {t.name: types == t for t in TYPES}
    groups["ALL"] = torch.ones_like(types, dtype=torch.bool)
    for h_name, h in HORIZONS.items():
        # a K=1 method's best-of-6 equals its best-of-1
        per_k = {k: displacement_metrics(pred, prob, gt, valid, min(k, pred.shape[1]), h, gt_heading=gt_heading,
                                      speed=speed) for k in (1, 6)}
        for g_name, m in groups.items():
            row = {}
            for k, mets in per_k.items():
                for name, val in mets.items():
                    sel = val[m]
                    sel = sel[~torch.isnan(sel)]
                    row[f"{name}@{k}"] = float(sel.mean()) if sel.numel() else None
            row["count"] = int(m.sum())
            out.setdefault(g_name, {})[h_name] = row
    return out


def format_table(results: dict[str, dict]) -> str:
    """Rows: method × type × horizon; columns: the main metrics."""
    cols = ["min_ade@1", "min_ade@6", "min_fde@6", "miss_rate@6", "womd_miss_rate@6", "brier_min_fde@6"]
    lines = [f"{'method':<20}{'type':<18}{'h':<5}" + "".join(f"{c:>16}" for c in cols) + f"{'n':>7}"]
    for method, res in results.items():
        for t, hs in res.items():
            for h, row in hs.items():
                cells = "".join(f"{row[c]:>16.3f}" if row.get(c) is not None else f"{'-':>16}" for c in cols)
                lines.append(f"{method:<20}{t:<18}{h:<5}{cells}{row['count']:>7}")
    return "\n".join(lines)
