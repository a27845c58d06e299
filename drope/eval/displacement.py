"""Open-loop forecasting metrics (pure functions over flat per-agent tensors).

drope's own dense metrics: minADE/minFDE over the K most likely modes (K = 1 and 6) at every
10 Hz step, miss rate at 2 m, Brier-minFDE (minFDE + (1 − p_best)²), per object type and horizon
(3/5/8 s = 30/50/80 steps; a shorter predicted future ends at its own length, e.g. 3/5/6 s for AV2's 60
steps: :func:`horizons_for`). The official WOMD motion metrics (2 Hz minADE/minFDE, speed-scaled
miss rate, overlap rate, mAP, soft mAP) come from :mod:`drope.metrics.motion`;
:func:`add_official_metrics` merges them into the same rows.
"""
from __future__ import annotations

import torch

from drope.data.types import ObjectType

Tensor = torch.Tensor
HORIZONS = {"3s": 30, "5s": 50, "8s": 80}
STEPS_PER_SECOND = 10


def horizon_name(steps: int) -> str:
    """``"6s"`` for 60 steps at 10 Hz (``"6.5s"`` for 65)."""
    return f"{steps / STEPS_PER_SECOND:g}s"


def horizons_for(future: int) -> dict[str, int]:
    """The :data:`HORIZONS` within ``future`` steps, plus ``future`` itself when it is not one of them, so
    that no row claims a horizon longer than what was predicted."""
    out = {k: h for k, h in HORIZONS.items() if h <= future}
    if future not in out.values():
        out[horizon_name(future)] = future
    return out
TYPES = (ObjectType.TYPE_VEHICLE, ObjectType.TYPE_PEDESTRIAN, ObjectType.TYPE_CYCLIST)
METRICS = ("min_ade", "min_fde", "miss_rate", "brier_min_fde")  # the keys of displacement_metrics


def displacement_metrics(pred: Tensor, prob: Tensor, gt: Tensor, valid: Tensor, k: int, horizon: int,
                         miss_threshold: float = 2.0) -> dict[str, Tensor]:
    """Per-agent metrics ``[N]`` for ``pred [N,K,F,2]``, ``prob [N,K]``, ``gt [N,F,2]``, ``valid [N,F]``.

    FDE uses the last valid step within the horizon; agents with no valid step there get NaN.
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
    return {
        "min_ade": torch.where(ok, ade.min(-1).values, nan),
        "min_fde": torch.where(ok, min_fde, nan),
        "miss_rate": torch.where(ok, (min_fde > miss_threshold).float(), nan),
        "brier_min_fde": torch.where(ok, min_fde + (1 - pk.gather(1, best[:, None])[:, 0]) ** 2, nan),
    }


class DenseMetricSums:
    """Streaming :func:`summarize`: per batch of agents, float64 sums and counts of the per-agent
    metrics (NaN left out) per type x horizon x K; :meth:`result` divides. Memory is O(1) in the
    number of agents, so an evaluation never needs its predictions at once."""

    KS = (1, 6)

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str, str], list[float]] = {}  # (group, horizon, metric@K) -> [sum, n]
        self.counts: dict[tuple[str, str], int] = {}  # (group, horizon) -> agents
        self.horizons: dict[str, int] | None = None  # fixed by the first batch's future length

    def add(self, pred: Tensor, prob: Tensor, gt: Tensor, valid: Tensor, types: Tensor) -> None:
        """``pred [N,K,F,2]``, ``prob [N,K]``, ``gt [N,F,2]``, ``valid [N,F]``, ``types [N]``."""
        hs = horizons_for(pred.shape[2])
        if self.horizons is not None and hs != self.horizons:
            raise ValueError(f"predictions of {pred.shape[2]} future steps mixed with horizons {self.horizons}")
        self.horizons = hs
        if pred.shape[0] == 0:
            return
        groups = {t.name: types == t for t in TYPES}
        groups["ALL"] = torch.ones_like(types, dtype=torch.bool)
        for h_name, h in hs.items():
            # a K=1 method's best-of-6 equals its best-of-1
            per_k = {k: displacement_metrics(pred, prob, gt, valid, min(k, pred.shape[1]), h) for k in self.KS}
            for g_name, m in groups.items():
                for k, mets in per_k.items():
                    for name, val in mets.items():
                        sel = val[m]
                        sel = sel[~torch.isnan(sel)]
                        acc = self.sums.setdefault((g_name, h_name, f"{name}@{k}"), [0.0, 0])
                        acc[0] += float(sel.double().sum())
                        acc[1] += sel.numel()
                self.counts[(g_name, h_name)] = self.counts.get((g_name, h_name), 0) + int(m.sum())

    def result(self) -> dict:
        """Nested ``{type: {horizon: {metric@K: value, "count": n}}}`` plus ``"ALL"``; None where no agents."""
        out: dict = {}
        for g_name in [t.name for t in TYPES] + ["ALL"]:
            for h_name in self.horizons or HORIZONS:
                row = {}
                for k in self.KS:
                    for name in METRICS:
                        tot, n = self.sums.get((g_name, h_name, f"{name}@{k}"), (0.0, 0))
                        row[f"{name}@{k}"] = tot / n if n else None
                row["count"] = self.counts.get((g_name, h_name), 0)
                out.setdefault(g_name, {})[h_name] = row
        return out


def summarize(pred: Tensor, prob: Tensor, gt: Tensor, valid: Tensor, types: Tensor) -> dict:
    """Nested ``{type: {horizon: {metric@K: value}}}`` plus ``"ALL"``; None where no agents."""
    acc = DenseMetricSums()
    acc.add(pred, prob, gt, valid, types)
    return acc.result()


#: Keys of the official WOMD motion metrics (``drope-score motion --json`` names), per type and horizon.
OFFICIAL_KEYS = ("min_ade", "min_fde", "miss_rate", "overlap_rate", "mean_average_precision",
                 "soft_mean_average_precision")


def add_official_metrics(summary: dict, official: dict | None, keys: tuple[str, ...] = OFFICIAL_KEYS) -> dict:
    """Merge :func:`drope.metrics.motion.aggregate_motion_metrics` output into :func:`summarize` rows.

    Per-type rows gain ``keys`` (default :data:`OFFICIAL_KEYS`; None where the type has no objects or the
    scenes do not fit the official config, ``official=None``); the official metrics are defined
    per type only, so ``"ALL"`` rows do not get them.
    """
    for t in TYPES:
        per_h = (official or {}).get(t.name) or {}
        for h_name, row in summary[t.name].items():
            row.update({k: (per_h.get(h_name) or {}).get(k) for k in keys})
    return summary


def _table(results: dict[str, dict], cols: list[str]) -> str:
    lines = [f"{'method':<20}{'type':<18}{'h':<5}" + "".join(f"{c:>16}" for c in cols) + f"{'n':>7}"]
    for method, res in results.items():
        for t, hs in res.items():
            for h, row in hs.items():
                cells = "".join(f"{row[c]:>16.3f}" if row.get(c) is not None else f"{'-':>16}" for c in cols)
                lines.append(f"{method:<20}{t:<18}{h:<5}{cells}{row['count']:>7}")
    return "\n".join(lines)


def format_table(results: dict[str, dict]) -> str:
    """drope's dense metrics; rows: method × type × horizon of ``results``."""
    return _table(results, ["min_ade@1", "min_ade@6", "min_fde@6", "miss_rate@6", "brier_min_fde@6"])


def format_official_table(results: dict[str, dict]) -> str:
    """The official WOMD motion metrics (short column names); rows: method × type × horizon, types with objects."""
    short = {"min_ade": "minADE", "min_fde": "minFDE", "miss_rate": "miss_rate", "overlap_rate": "overlap",
             "mean_average_precision": "mAP", "soft_mean_average_precision": "soft_mAP"}
    renamed = {m: {t: {h: {short.get(k, k): v for k, v in row.items()} for h, row in hs.items()}
                   for t, hs in res.items() if t != "ALL" and any(r["count"] for r in hs.values())}
               for m, res in results.items()}
    return _table(renamed, list(short.values()))
