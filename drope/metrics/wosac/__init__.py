"""The 2025 sim-agents (WOSAC) realism metric, as the official code defines it, in batched torch.

Entry points: :func:`prepare_scene` (once per scene) and :func:`score_prepared` (per rollout set),
or :func:`score_scene_rollouts` for rollouts in scene terms. Values are keyed by the official
``SimAgentMetrics`` field names (:data:`METRIC_FIELDS`).
"""
from drope.metrics.wosac.config import FEATURES, FeatureConfig, WosacConfig, config_from_textproto
from drope.metrics.wosac.metametric import METRIC_FIELDS, WosacFeatures, scenario_metrics
from drope.metrics.wosac.scoring import (
    PreparedScene,
    RolloutError,
    compute_features,
    eval_agent_indices,
    prepare_scene,
    rollout_features,
    score_prepared,
    score_scene_rollouts,
    sim_agent_indices,
)

__all__ = [
    "FEATURES", "FeatureConfig", "WosacConfig", "config_from_textproto", "METRIC_FIELDS", "WosacFeatures",
    "scenario_metrics", "PreparedScene", "RolloutError", "compute_features", "eval_agent_indices",
    "prepare_scene", "rollout_features", "score_prepared", "score_scene_rollouts", "sim_agent_indices",
]
