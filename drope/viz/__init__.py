"""Plots of scenes, predictions and rollouts (matplotlib, Agg-friendly, collections for speed)."""
from drope.viz.scene_plot import (
    TYPE_COLORS,
    draw_agents,
    draw_map,
    draw_predictions,
    draw_trajectories,
    plot_scene,
)

__all__ = ["TYPE_COLORS", "draw_agents", "draw_map", "draw_predictions", "draw_trajectories", "plot_scene"]
