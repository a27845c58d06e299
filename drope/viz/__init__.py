"""Plots of scenes, predictions and rollouts (matplotlib, Agg-friendly, collections for speed)."""
from drope.viz.scene_plot import (
    SDC_COLOR,
    SIGNAL_COLORS,
    TYPE_COLORS,
    agent_colors,
    draw_agents,
    draw_legend,
    draw_map,
    draw_predictions,
    draw_trajectories,
    plot_scene,
    signal_category,
)

__all__ = [
    "SDC_COLOR", "SIGNAL_COLORS", "TYPE_COLORS", "agent_colors", "draw_agents", "draw_legend", "draw_map",
    "draw_predictions", "draw_trajectories", "plot_scene", "signal_category",
]
