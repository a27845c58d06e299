"""Official-definition scoring without TensorFlow: WOMD motion metrics (:mod:`drope.metrics.motion`),
the 2025 sim-agents (WOSAC) metrics (:mod:`drope.metrics.wosac`) and submission files
(:mod:`drope.metrics.submission`)."""
from drope.metrics.motion import (
    MeasurementStep,
    MotionMetricsConfig,
    MotionRecords,
    aggregate_motion_metrics,
    motion_records_2hz,
    scene_motion_records,
)

__all__ = [
    "MeasurementStep",
    "MotionMetricsConfig",
    "MotionRecords",
    "aggregate_motion_metrics",
    "motion_records_2hz",
    "scene_motion_records",
]
