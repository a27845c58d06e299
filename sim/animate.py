"""Rollout animations: the viz engineer's ``animate_scene`` (map drawn once, box artists updated
in place) fed with simulated states, colliding and off-road agents outlined in red."""
from __future__ import annotations

from pathlib import Path


from drope.data.scene import Scene
from drope.sim.events import AgentMetrics
from drope.sim.rollout import Rollouts


def animate_rollout(scene: Scene, ro: Rollouts, metrics: AgentMetrics | None, path: str | Path, rollout: int = 0,
                    fps: int = 10, dpi: int = 80) -> dict:
    """Write rollout ``rollout`` from its start step to its end; returns frames and seconds per frame."""
    from drope.viz.animate import animate_scene

    hl = None
    if metrics is not None:
        hl = (metrics.collision_steps[rollout] | metrics.offroad_steps[rollout])  # [A, T]
    policy_note = f"{scene.scenario_id} rollout {rollout}  (red outline: collision / off-road)"
    return animate_scene(scene, path, xy=ro.xy[rollout], heading=ro.heading[rollout], valid=ro.valid[rollout],
                         highlight=hl, steps=range(ro.start, ro.xy.shape[2]), fps=fps, dpi=dpi, title=policy_note)
