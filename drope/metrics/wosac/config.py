"""Configuration of the sim-agents metrics: one entry per feature (estimator + meta-metric weight).

Defaults equal the official 2025 sim-agents challenge config
(``challenge_2025_sim_agents_config.textproto``); :func:`config_from_textproto` reads any
``SimAgentMetricsConfig`` text proto (the protos import without TensorFlow).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

#: Proto default of ``additive_smoothing_pseudocount`` (a float32 0.001).
DEFAULT_PSEUDOCOUNT = 0.0010000000474974513

#: Feature names in the order the official code sums the meta-metric.
FEATURES = (
    "linear_speed",
    "linear_acceleration",
    "angular_speed",
    "angular_acceleration",
    "distance_to_nearest_object",
    "collision_indication",
    "time_to_collision",
    "distance_to_road_edge",
    "offroad_indication",
    "traffic_light_violation",
)


@dataclass(frozen=True)
class FeatureConfig:
    """One feature's estimator. ``kind`` is ``"histogram"`` or ``"bernoulli"``."""

    kind: str = "histogram"
    min_val: float = 0.0
    max_val: float = 1.0
    num_bins: int = 10
    pseudocount: float = DEFAULT_PSEUDOCOUNT
    independent_timesteps: bool = True
    metametric_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("histogram", "bernoulli"):
            raise ValueError(f"unsupported estimator {self.kind!r} (histogram or bernoulli)")
        if self.kind == "histogram" and not (self.max_val > self.min_val and self.num_bins > 0):
            raise ValueError(f"histogram needs max_val > min_val and num_bins > 0, got {self}")


def _h(lo: float, hi: float, bins: int, w: float) -> FeatureConfig:
    return FeatureConfig("histogram", lo, hi, bins, 0.1, True, w)


def _b(w: float) -> FeatureConfig:
    return FeatureConfig("bernoulli", -0.5, 1.5, 2, DEFAULT_PSEUDOCOUNT, False, w)


@dataclass(frozen=True)
class WosacConfig:
    """Per-feature estimators and weights (2025 challenge values) and the simulation layout."""

    linear_speed: FeatureConfig = field(default_factory=lambda: _h(0.0, 25.0, 10, 0.05))
    linear_acceleration: FeatureConfig = field(default_factory=lambda: _h(-12.0, 12.0, 11, 0.05))
    angular_speed: FeatureConfig = field(default_factory=lambda: _h(-0.628, 0.628, 11, 0.05))
    angular_acceleration: FeatureConfig = field(default_factory=lambda: _h(-3.14, 3.14, 11, 0.05))
    distance_to_nearest_object: FeatureConfig = field(default_factory=lambda: _h(-5.0, 40.0, 10, 0.10))
    collision_indication: FeatureConfig = field(default_factory=lambda: _b(0.25))
    time_to_collision: FeatureConfig = field(default_factory=lambda: _h(0.0, 5.0, 10, 0.10))
    distance_to_road_edge: FeatureConfig = field(default_factory=lambda: _h(-20.0, 40.0, 10, 0.05))
    offroad_indication: FeatureConfig = field(default_factory=lambda: _b(0.25))
    traffic_light_violation: FeatureConfig = field(default_factory=lambda: _b(0.05))
    current_index: int = 10
    num_future_steps: int = 80
    num_rollouts: int = 32
    step_seconds: float = 0.1


def config_from_textproto(path: str | Path) -> WosacConfig:
    """Read a ``SimAgentMetricsConfig`` text proto (e.g. the official challenge file)."""
    from google.protobuf import text_format

    from waymo_open_dataset.protos import sim_agents_metrics_pb2

    proto = sim_agents_metrics_pb2.SimAgentMetricsConfig()
    try:
        text_format.Parse(Path(path).read_text(), proto)
    except text_format.ParseError as e:
        raise ValueError(f"{path}: not a SimAgentMetricsConfig text proto: {e}") from e
    values = {}
    for name in FEATURES:
        fc = getattr(proto, name)
        kind = fc.WhichOneof("estimator")
        if kind == "histogram":
            h = fc.histogram
            values[name] = FeatureConfig("histogram", h.min_val, h.max_val, h.num_bins,
                                         h.additive_smoothing_pseudocount, fc.independent_timesteps,
                                         fc.metametric_weight)
        elif kind == "bernoulli":
            values[name] = FeatureConfig("bernoulli", -0.5, 1.5, 2, fc.bernoulli.additive_smoothing_pseudocount,
                                         fc.independent_timesteps, fc.metametric_weight)
        else:
            raise ValueError(f"{path}: feature {name} uses estimator {kind!r}; only histogram/bernoulli are supported")
        if fc.aggregate_objects:
            raise ValueError(f"{path}: feature {name} sets aggregate_objects (scenario-gen only), unsupported")
    return dataclasses.replace(WosacConfig(), **values)
