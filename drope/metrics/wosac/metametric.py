"""Per-scenario aggregation: feature likelihoods, meta-metric, ADE and simulated event rates."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from drope.data.types import ObjectType
from drope.metrics.wosac.config import FEATURES, WosacConfig
from drope.metrics.wosac.estimators import log_likelihood, log_likelihood_scenario
from drope.metrics.wosac.features import kinematic_validity

Tensor = torch.Tensor

#: Field names of the official ``SimAgentMetrics`` proto, in its order.
METRIC_FIELDS = (
    "scenario_id",
    "metametric",
    "average_displacement_error",
    "min_average_displacement_error",
    *(f"{name}_likelihood" for name in FEATURES),
    "simulated_collision_rate",
    "simulated_offroad_rate",
    "simulated_traffic_light_violation_rate",
)


@dataclass(frozen=True)
class WosacFeatures:
    """Features of the evaluated objects over the 80 simulated steps (N = 1 for the log)."""

    object_type: Tensor  # [E] int64
    valid: Tensor  # [E, T] bool (log validity for the log; all True for rollouts)
    ade: Tensor  # [N, E] float64 m
    linear_speed: Tensor  # [N, E, T]
    linear_acceleration: Tensor  # [N, E, T]
    angular_speed: Tensor  # [N, E, T]
    angular_acceleration: Tensor  # [N, E, T]
    distance_to_nearest_object: Tensor  # [N, E, T]
    collision: Tensor  # [N, E, T] bool
    time_to_collision: Tensor  # [N, E, T]
    distance_to_road_edge: Tensor  # [N, E, T]
    offroad: Tensor  # [N, E, T] bool
    traffic_light_violation: Tensor  # [N, E, T] bool


def _masked_mean(x: Tensor, mask: Tensor) -> float:
    n = mask.sum()
    return float(torch.where(mask, x, torch.zeros_like(x)).sum() / n) if int(n) else float("nan")


def scenario_metrics(scenario_id: str, log: WosacFeatures, sim: WosacFeatures, config: WosacConfig) -> dict:
    """The official per-scenario ``SimAgentMetrics`` values as a dict keyed by its field names."""
    valid = log.valid  # [E, T]
    speed_valid, accel_valid = kinematic_validity(log.valid)
    out: dict[str, float | str] = {"scenario_id": scenario_id}
    out["average_displacement_error"] = float(sim.ade.mean())
    out["min_average_displacement_error"] = float(sim.ade.mean(1).min())

    def ts(name: str, mask: Tensor) -> float:
        ll = log_likelihood(getattr(config, name), getattr(log, name)[0], getattr(sim, name))
        return math.exp(_masked_mean(ll, mask))

    out["linear_speed_likelihood"] = ts("linear_speed", speed_valid)
    out["linear_acceleration_likelihood"] = ts("linear_acceleration", accel_valid)
    out["angular_speed_likelihood"] = ts("angular_speed", speed_valid)
    out["angular_acceleration_likelihood"] = ts("angular_acceleration", accel_valid)
    out["distance_to_nearest_object_likelihood"] = ts("distance_to_nearest_object", valid)
    is_vehicle = (log.object_type == ObjectType.TYPE_VEHICLE)[:, None]  # [E, 1]
    out["time_to_collision_likelihood"] = ts("time_to_collision", valid & is_vehicle)
    out["distance_to_road_edge_likelihood"] = ts("distance_to_road_edge", valid)

    def event(name: str, cfg_name: str, mask: Tensor) -> tuple[float, Tensor]:
        sim_any = (getattr(sim, name) & mask).any(-1)  # [N, E]
        log_any = (getattr(log, name) & mask).any(-1)[0]  # [E]
        ll = log_likelihood_scenario(getattr(config, cfg_name), log_any, sim_any)
        return math.exp(float(ll.mean())), sim_any

    out["collision_indication_likelihood"], sim_coll = event("collision", "collision_indication", valid)
    out["offroad_indication_likelihood"], sim_off = event("offroad", "offroad_indication", valid)
    out["traffic_light_violation_likelihood"], _ = event("traffic_light_violation", "traffic_light_violation",
                                                           valid & is_vehicle)
    out["simulated_collision_rate"] = float(sim_coll.double().mean())
    out["simulated_offroad_rate"] = float(sim_off.double().mean())
    # the official rate filters by log validity only (not by vehicle type)
    out["simulated_traffic_light_violation_rate"] = float((sim.traffic_light_violation & valid).any(-1).double().mean())
    out["metametric"] = sum(
        getattr(config, name).metametric_weight * out[f"{name}_likelihood"] for name in FEATURES
    )
    return {k: out[k] for k in METRIC_FIELDS}
