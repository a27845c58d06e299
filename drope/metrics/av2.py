"""Argoverse 2 motion-forecasting metrics as the AV2 challenge scores a submission.

Per track, with ``av2.datasets.motion_forecasting.eval.metrics`` (av2 0.3.6) for the displacement
and Brier terms and the challenge's per-track procedure for choosing the trajectories:

- the K predictions are put in descending probability order (av2's submission reader sorts the
  rows by probability; ties here keep the submitted order, as ``np.argmax`` would);
- K=1: the most probable prediction: its ADE, FDE and miss (FDE > 2 m);
- K=6: the first 6 of that order (all of them when K < 6): min FDE, and the miss of that same
  prediction; min ADE independently (its own argmin, not the ADE of the min-FDE prediction);
- brier-minFDE (K=6): FDE + (1 - p)^2 of the min-FDE prediction, ``p`` its probability divided by
  the sum over *all* K submitted probabilities (av2's ``normalize=True``). As in av2, a
  probability outside [0, 1] is an error even though it is normalised afterwards.

Summaries are plain means over tracks (the challenge rounds them to 4 decimals; drope does not).
Validity (an extension; AV2 focal tracks are fully observed): ADE averages the valid steps, FDE is
taken at the last valid step, i.e. av2's functions on the valid steps only; a track without a
valid future step is not counted. ``docs/compare_av2_official.py`` checks these against av2 and
wrote ``tests/data/av2_metrics_golden.json``.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = [
    "AV2_METRIC_KEYS",
    "MISS_THRESHOLD_M",
    "av2_metrics",
    "av2_metrics_focal_and_scored",
    "av2_track_metrics",
    "summarize_av2",
]

MISS_THRESHOLD_M = 2.0
AV2_METRIC_KEYS = (
    "min_ade_k1", "min_fde_k1", "miss_rate_k1", "min_ade_k6", "min_fde_k6", "miss_rate_k6", "brier_min_fde_k6",
)
_TOP_K = 6


def _f64(x, name: str, ndim: int) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors, without importing torch here
        x = x.detach().cpu().numpy()
    a = np.asarray(x, np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


def av2_track_metrics(pred, prob, gt, valid=None, miss_threshold_m: float = MISS_THRESHOLD_M) -> dict[str, np.ndarray]:
    """Per-track AV2 metrics.

    Args:
        pred: [N, K, T, 2] predicted positions (any frame shared with ``gt``), numpy or torch.
        prob: [N, K] probabilities in [0, 1] (normalised per track for the Brier term).
        gt: [N, T, 2] ground-truth future positions.
        valid: optional [N, T] bool validity of ``gt`` (default: all valid).

    Returns ``{key: [N] float64}`` for every key of :data:`AV2_METRIC_KEYS` (misses as 0/1) plus
    ``counted`` ([N] bool: the track has a valid future step; other tracks hold NaN).
    """
    pred, prob, gt = _f64(pred, "pred", 4), _f64(prob, "prob", 2), _f64(gt, "gt", 3)
    N, K, T, _ = pred.shape
    if prob.shape != (N, K) or gt.shape != (N, T, 2) or pred.shape[-1] != 2:
        raise ValueError(f"shapes do not match: pred {pred.shape} [N,K,T,2], prob {prob.shape} [N,K], gt {gt.shape} [N,T,2]")
    if K == 0:
        raise ValueError("pred holds no predictions (K = 0)")
    valid = np.ones((N, T), bool) if valid is None else _f64(valid, "valid", 2).astype(bool)
    if valid.shape != (N, T):
        raise ValueError(f"valid has shape {valid.shape}, expected {(N, T)}")
    bad = ~np.isfinite(prob) | (prob < 0) | (prob > 1)
    if bad.any():
        n, k = np.argwhere(bad)[0]
        raise ValueError(f"probability of track {n} prediction {k} is {prob[n, k]}, outside [0, 1]")
    total = prob.sum(axis=1)
    if (total <= 0).any():
        raise ValueError(f"probabilities of track {int(np.flatnonzero(total <= 0)[0])} sum to 0; cannot normalise")

    order = np.argsort(-prob, axis=1, kind="stable")  # descending, ties in submitted order
    pred = np.take_along_axis(pred, order[:, :, None, None], axis=1)
    p = np.take_along_axis(prob, order, axis=1) / total[:, None]

    counted = valid.any(axis=1)
    last = np.where(counted, T - 1 - np.argmax(valid[:, ::-1], axis=1), 0)
    dist = np.linalg.norm(pred - gt[:, None], axis=-1)  # [N, K, T]
    n_valid = np.maximum(valid.sum(axis=1), 1)[:, None]
    ade = np.where(valid[:, None], dist, 0.0).sum(axis=-1) / n_valid  # [N, K]; NaN gt at invalid steps is fine
    fde = dist[np.arange(N), :, last]  # [N, K]

    top = min(_TOP_K, K)
    best = np.argmin(fde[:, :top], axis=1)  # first minimum, as np.argmin in the challenge script
    rows = np.arange(N)
    out = {
        "min_ade_k1": ade[:, 0],
        "min_fde_k1": fde[:, 0],
        "miss_rate_k1": (fde[:, 0] > miss_threshold_m).astype(np.float64),
        "min_ade_k6": ade[:, :top].min(axis=1),
        "min_fde_k6": fde[rows, best],
        "miss_rate_k6": (fde[rows, best] > miss_threshold_m).astype(np.float64),
        "brier_min_fde_k6": fde[rows, best] + np.square(1.0 - p[rows, best]),
    }
    out = {k: np.where(counted, v, np.nan) for k, v in out.items()}
    out["counted"] = counted
    return out


def summarize_av2(per_track: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Means over counted tracks of :func:`av2_track_metrics` output (concatenate batches first).
    Adds ``num_tracks``; every metric is NaN when no track counts."""
    counted = np.asarray(per_track["counted"], bool)
    out = {k: float(np.mean(np.asarray(per_track[k])[counted])) if counted.any() else float("nan") for k in AV2_METRIC_KEYS}
    out["num_tracks"] = int(counted.sum())
    return out


def av2_metrics(pred, prob, gt, valid=None) -> dict[str, float]:
    """AV2 summary metrics over N tracks: keys of :data:`AV2_METRIC_KEYS` plus ``num_tracks``."""
    return summarize_av2(av2_track_metrics(pred, prob, gt, valid))


def av2_metrics_focal_and_scored(pred, prob, gt, valid, is_focal) -> dict[str, dict[str, float]]:
    """``{"focal": ..., "scored": ...}``: the challenge's focal-track metrics, and the same per-track
    definitions over all scored tracks (focal included: AV2's tracks to predict). The rows of
    ``pred``/``prob``/``gt``/``valid`` are the scored tracks; ``is_focal`` [N] marks the focal ones."""
    per = av2_track_metrics(pred, prob, gt, valid)
    focal = np.asarray(is_focal.detach().cpu() if hasattr(is_focal, "detach") else is_focal, bool)
    if focal.shape != per["counted"].shape:
        raise ValueError(f"is_focal has shape {focal.shape}, expected {per['counted'].shape}")
    return {
        "focal": summarize_av2({k: v[focal] for k, v in per.items()}),
        "scored": summarize_av2(per),
    }
