"""Scene animations with reused artists: the map is drawn once, boxes and trails are updated.

``animate_scene(scene, "scene.gif")`` writes a GIF (Pillow) or MP4 (when ffmpeg is on PATH).
Optional ``xy``/``heading``/``valid`` ``[A, T, ...]`` replace the logged states (e.g. a rollout),
and ``highlight [A, T]`` bool marks agents to outline in red at those steps (collisions, off-road).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

from drope.data.scene import Scene
from drope.data.types import ObjectType
from drope.geometry import box_corners
from drope.viz.scene_plot import SDC_COLOR, TYPE_COLORS, draw_map


def animate_scene(scene: Scene, path: str | Path, *, xy: torch.Tensor | None = None, heading: torch.Tensor | None = None,
                  valid: torch.Tensor | None = None, highlight: torch.Tensor | None = None, steps: range | None = None,
                  fps: int = 10, extent: float | None = None, dpi: int = 80, title: str | None = None) -> dict:
    """Write an animation; returns ``{"frames": n, "seconds_per_frame": s}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FFMpegWriter, PillowWriter
    from matplotlib.collections import PolyCollection

    xy = scene.agent_pos if xy is None else xy
    heading = scene.agent_heading if heading is None else heading
    valid = scene.agent_valid if valid is None else valid
    T = xy.shape[1]
    steps = steps or range(T)
    size = scene.agent_size[:, scene.current_index].clone()
    size[size[:, 0] <= 0] = torch.tensor([4.5, 2.0, 1.5])
    corners = box_corners(xy.double(), heading.double(), size[:, None, 0].double().expand(-1, T),
                          size[:, None, 1].double().expand(-1, T)).numpy()  # [A, T, 4, 2]
    face = np.array([matplotlib.colors.to_rgba(SDC_COLOR if i == scene.sdc_index else TYPE_COLORS[ObjectType(int(t))])
                     for i, t in enumerate(scene.agent_type.tolist())])
    fig, ax = plt.subplots(figsize=(6, 6))
    draw_map(ax, scene, show_signals=False)
    pts = xy[valid].numpy()
    centre = (pts.min(0) + pts.max(0)) / 2 if len(pts) else np.zeros(2)
    half = extent or max(30.0, float((pts.max(0) - pts.min(0)).max()) / 2 + 10) if len(pts) else 50.0
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    boxes = PolyCollection([], linewidths=0.8, zorder=6)
    ax.add_collection(boxes)
    label = ax.set_title("", fontsize=9)
    hl = highlight.numpy() if highlight is not None else np.zeros(valid.shape, bool)
    writer = FFMpegWriter(fps=fps) if Path(path).suffix == ".mp4" and shutil.which("ffmpeg") else PillowWriter(fps=fps)
    if Path(path).suffix == ".mp4" and not isinstance(writer, FFMpegWriter):
        path = Path(path).with_suffix(".gif")  # no ffmpeg here: fall back to GIF
    t0, n = time.perf_counter(), 0
    with writer.saving(fig, str(path), dpi):
        for t in steps:
            m = valid[:, t].numpy()
            boxes.set_verts(list(corners[m, t]))
            boxes.set_facecolor(face[m])
            boxes.set_edgecolor(np.where(hl[m, t][:, None], [[0.9, 0, 0, 1]], [[1, 1, 1, 1]]))
            boxes.set_linewidth(np.where(hl[m, t], 2.5, 0.6))
            label.set_text(f"{title or scene.scenario_id}  t = {(t - scene.current_index) * scene.dt:+.1f} s")
            writer.grab_frame()
            n += 1
    plt.close(fig)
    return {"frames": n, "seconds_per_frame": (time.perf_counter() - t0) / max(n, 1), "path": str(path)}
