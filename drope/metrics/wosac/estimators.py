"""Histogram / Bernoulli log-likelihood estimators of logged features under simulated ones."""
from __future__ import annotations

import torch

from drope.metrics.wosac.config import FeatureConfig

Tensor = torch.Tensor


def histogram_bins(values: Tensor, cfg: FeatureConfig) -> Tensor:
    """Bin index of every value (clipped into range; NaN lands in the last bin, as the official
    histogram does). Binning is done in float32 like the official code."""
    edges = torch.linspace(cfg.min_val, cfg.max_val, cfg.num_bins + 1, dtype=torch.float32)
    v = values.to(torch.float32).clamp(edges[0], edges[-1])
    idx = torch.bucketize(v, edges, right=True) - 1
    idx = idx.clamp(0, cfg.num_bins - 1)
    return torch.where(torch.isnan(v), torch.full_like(idx, cfg.num_bins - 1), idx)


def log_likelihood(cfg: FeatureConfig, log_values: Tensor, sim_values: Tensor) -> Tensor:
    """Log-likelihood ``[O, T]`` of ``log_values [O, T]`` under ``sim_values [N, O, T]``.

    With ``independent_timesteps`` one histogram per object pools all rollouts and steps;
    otherwise one histogram per object and step. Counts get ``pseudocount`` added before
    normalising. Bernoulli features are a two-bin histogram over {0, 1}.
    """
    if sim_values.dim() != 3 or log_values.shape != sim_values.shape[1:]:
        raise ValueError(f"log values {tuple(log_values.shape)} do not match sim values {tuple(sim_values.shape)}")
    N, O, T = sim_values.shape
    sim_bins = histogram_bins(sim_values.to(torch.float32), cfg)  # [N, O, T]
    log_bins = histogram_bins(log_values.to(torch.float32), cfg)  # [O, T]
    B = cfg.num_bins
    if cfg.independent_timesteps:
        counts = torch.zeros(O, B, dtype=torch.float64)
        counts.scatter_add_(1, sim_bins.permute(1, 0, 2).reshape(O, N * T), torch.ones(O, N * T, dtype=torch.float64))
        counts = counts[:, None, :].expand(O, T, B)
    else:
        counts = torch.zeros(O, T, B, dtype=torch.float64)
        counts.scatter_add_(2, sim_bins.permute(1, 2, 0), torch.ones(O, T, N, dtype=torch.float64))
    counts = counts.to(torch.float32).to(torch.float64) + torch.tensor(cfg.pseudocount, dtype=torch.float32).double()
    logp = counts.log() - counts.sum(-1, keepdim=True).log()  # [O, T, B]
    return logp.gather(-1, log_bins[..., None])[..., 0]


def log_likelihood_scenario(cfg: FeatureConfig, log_values: Tensor, sim_values: Tensor) -> Tensor:
    """Per-object log-likelihood ``[O]`` of time-aggregated values ``log [O]`` under ``sim [N, O]``."""
    return log_likelihood(cfg, log_values[:, None].double(), sim_values[..., None].double())[:, 0]
