"""Scene drawing built from small reusable pieces.

``draw_map`` draws the static map once; ``draw_agents`` returns a PolyCollection whose
vertices later stages (animations) update in place; ``draw_trajectories`` and
``draw_predictions`` overlay histories, futures, predicted modes and rollouts.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PolyCollection

from drope.data.scene import Scene
from drope.data.types import POLYGON_TYPES, MapType, ObjectType, RoadLineType, SignalState
from drope.geometry import box_corners

TYPE_COLORS = {
    ObjectType.TYPE_UNSET: "#7f7f7f",
    ObjectType.TYPE_VEHICLE: "#1f77b4",
    ObjectType.TYPE_PEDESTRIAN: "#d62728",
    ObjectType.TYPE_CYCLIST: "#2ca02c",
    ObjectType.TYPE_OTHER: "#9467bd",
}
SDC_COLOR = "#ff7f0e"
_SIGNAL_COLORS = {
    "stop": "#e41a1c",
    "caution": "#ffbf00",
    "go": "#4daf4a",
    "unknown": "#999999",
}
_YELLOW = {
    RoadLineType.TYPE_BROKEN_SINGLE_YELLOW, RoadLineType.TYPE_BROKEN_DOUBLE_YELLOW,
    RoadLineType.TYPE_SOLID_SINGLE_YELLOW, RoadLineType.TYPE_SOLID_DOUBLE_YELLOW,
    RoadLineType.TYPE_PASSING_DOUBLE_YELLOW,
}
_BROKEN = {RoadLineType.TYPE_BROKEN_SINGLE_WHITE, RoadLineType.TYPE_BROKEN_SINGLE_YELLOW, RoadLineType.TYPE_BROKEN_DOUBLE_YELLOW}


def _signal_color(state: int) -> str:
    name = SignalState(state).name
    for key in ("STOP", "CAUTION", "GO"):
        if key in name:
            return _SIGNAL_COLORS[key.lower()]
    return _SIGNAL_COLORS["unknown"]


def draw_map(ax: Axes, scene: Scene, *, step: int | None = None, show_signals: bool = True) -> None:
    """Lanes, road lines, road edges, crosswalks/speed bumps/driveways, stop signs, signal states."""
    pts = scene.map_points[:, :2].numpy()
    off = scene.map_offsets.tolist()
    mtype, sub = scene.map_type.tolist(), scene.map_subtype.tolist()
    groups: dict[str, list[np.ndarray]] = {k: [] for k in ("lane", "edge", "white", "yellow", "broken")}
    polys: dict[int, list[np.ndarray]] = {int(t): [] for t in POLYGON_TYPES}
    stops = []
    for f in range(scene.num_map_features):
        p = pts[off[f] : off[f + 1]]
        t = mtype[f]
        if t == MapType.lane:
            groups["lane"].append(p)
        elif t == MapType.road_edge:
            groups["edge"].append(p)
        elif t == MapType.road_line:
            key = "broken" if sub[f] in _BROKEN else ("yellow" if sub[f] in _YELLOW else "white")
            groups[key].append(p)
        elif t == MapType.stop_sign:
            stops.append(p[0])
        elif t in polys and len(p) >= 3:
            polys[t].append(p)
    styles = {
        "lane": dict(colors="#c8c8c8", linewidths=0.6, linestyles="dotted", zorder=1),
        "edge": dict(colors="#303030", linewidths=1.3, zorder=2),
        "white": dict(colors="#8c8c8c", linewidths=0.8, zorder=2),
        "yellow": dict(colors="#d4a017", linewidths=0.9, zorder=2),
        "broken": dict(colors="#a0a0a0", linewidths=0.8, linestyles="dashed", zorder=2),
    }
    for key, lines in groups.items():
        if lines:
            ax.add_collection(LineCollection(lines, **styles[key]))
    poly_style = {
        MapType.crosswalk: dict(facecolors="#e6e6e6", edgecolors="#b0b0b0", hatch="///"),
        MapType.speed_bump: dict(facecolors="#f4d9a6", edgecolors="#c8a060"),
        MapType.driveway: dict(facecolors="#efefef", edgecolors="#cccccc"),
    }
    for t, ps in polys.items():
        if ps:
            ax.add_collection(PolyCollection(ps, linewidths=0.5, zorder=0, **poly_style[MapType(t)]))
    if stops:
        s = np.asarray(stops)
        ax.scatter(s[:, 0], s[:, 1], marker="8", s=40, c="#c00000", edgecolors="white", linewidths=0.5, zorder=4)
    if show_signals and scene.signal_valid.shape[1]:
        t = scene.current_index if step is None else step
        valid = scene.signal_valid[t].numpy()
        if valid.any():
            xy = scene.signal_stop_point[t, :, :2].numpy()[valid]
            colors = [_signal_color(int(s)) for s in scene.signal_state[t].numpy()[valid]]
            ax.scatter(xy[:, 0], xy[:, 1], s=30, c=colors, marker="s", edgecolors="black", linewidths=0.4, zorder=5)


def agent_box_vertices(scene: Scene, step: int, agents: torch.Tensor | None = None) -> np.ndarray:
    """``[N, 4, 2]`` box corners of ``agents`` (default: all) at ``step``."""
    idx = torch.arange(scene.num_agents) if agents is None else agents
    size = scene.agent_size[idx, step]
    return box_corners(scene.agent_pos[idx, step], scene.agent_heading[idx, step], size[:, 0], size[:, 1]).numpy()


def draw_agents(ax: Axes, scene: Scene, step: int | None = None, *, agents: torch.Tensor | None = None,
                alpha: float = 0.85) -> PolyCollection:
    """Oriented boxes coloured by type (SDC orange, tracks to predict outlined) for agents valid at ``step``."""
    t = scene.current_index if step is None else step
    idx = scene.agent_valid[:, t].nonzero(as_tuple=True)[0] if agents is None else agents
    verts = agent_box_vertices(scene, t, idx)
    types = scene.agent_type[idx].tolist()
    face = [SDC_COLOR if int(i) == scene.sdc_index else TYPE_COLORS[ObjectType(ty)] for i, ty in zip(idx.tolist(), types)]
    ttp = set(scene.tracks_to_predict.tolist())
    edge = ["black" if int(i) in ttp else "white" for i in idx.tolist()]
    pc = PolyCollection(verts, facecolors=face, edgecolors=edge, linewidths=0.8, alpha=alpha, zorder=6)
    ax.add_collection(pc)
    return pc


def draw_trajectories(ax: Axes, xy: np.ndarray | torch.Tensor, valid: np.ndarray | torch.Tensor | None = None, *,
                      color="#1f77b4", linewidth: float = 1.0, alpha: float = 0.8, linestyle="solid",
                      zorder: int = 3) -> LineCollection:
    """Polylines ``xy [N, T, 2]``; invalid steps break the line."""
    xy = np.asarray(xy)
    valid = np.ones(xy.shape[:2], bool) if valid is None else np.asarray(valid)
    segs, cols = [], []
    colors = color if isinstance(color, (list, tuple, np.ndarray)) and len(color) == len(xy) else [color] * len(xy)
    for n in range(xy.shape[0]):
        ok = valid[n, 1:] & valid[n, :-1]
        if ok.any():
            segs.extend(np.stack([xy[n, :-1][ok], xy[n, 1:][ok]], axis=1))
            cols.extend([colors[n]] * int(ok.sum()))
    lc = LineCollection(segs, colors=cols, linewidths=linewidth, alpha=alpha, linestyles=linestyle, zorder=zorder)
    ax.add_collection(lc)
    return lc


def draw_predictions(ax: Axes, xy: np.ndarray | torch.Tensor, prob: np.ndarray | torch.Tensor, *, cmap: str = "plasma",
                     label_prob: bool = True) -> None:
    """Predicted modes ``xy [R, K, T, 2]`` with ``prob [R, K]``: width/alpha by probability, end labels."""
    import matplotlib

    xy, prob = np.asarray(xy), np.asarray(prob)
    cm = matplotlib.colormaps[cmap]
    for r in range(xy.shape[0]):
        order = np.argsort(prob[r])
        for rank, k in enumerate(order):
            p = float(prob[r, k])
            c = cm(0.15 + 0.7 * rank / max(len(order) - 1, 1))
            ax.plot(xy[r, k, :, 0], xy[r, k, :, 1], color=c, linewidth=0.8 + 2.5 * p, alpha=0.35 + 0.65 * p, zorder=7)
            ax.scatter(xy[r, k, -1, 0], xy[r, k, -1, 1], color=c, s=8, zorder=8)
            if label_prob and p >= 0.05:
                ax.annotate(f"{p:.2f}", xy[r, k, -1], fontsize=6, color=c, zorder=9, xytext=(2, 2),
                            textcoords="offset points")


def plot_scene(scene: Scene, ax: Axes | None = None, *, step: int | None = None, history: bool = True,
               future: bool = True, agents: torch.Tensor | None = None, extent: float | None = None,
               title: str | None = None, show_signals: bool = True, figsize=(8, 8)) -> Axes:
    """Map, agents (boxes at ``step``, default current), their history and logged future.

    ``extent`` is the half-width of the view in metres around the valid agents' centre (auto if None).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    t = scene.current_index if step is None else step
    draw_map(ax, scene, step=t, show_signals=show_signals)
    sel = scene.agent_valid[:, t].nonzero(as_tuple=True)[0] if agents is None else agents
    pos, valid = scene.agent_pos[sel].numpy(), scene.agent_valid[sel].numpy()
    colors = [SDC_COLOR if int(i) == scene.sdc_index else TYPE_COLORS[ObjectType(int(scene.agent_type[i]))] for i in sel]
    if history:
        draw_trajectories(ax, pos[:, : t + 1], valid[:, : t + 1], color=colors, linewidth=1.2, alpha=0.9)
    if future and t + 1 < scene.num_steps:
        draw_trajectories(ax, pos[:, t:], valid[:, t:], color=colors, linewidth=0.9, alpha=0.45, linestyle="dashed")
    draw_agents(ax, scene, t, agents=sel)
    cur = scene.agent_pos[sel, t].numpy()
    if len(cur):
        centre = (cur.min(0) + cur.max(0)) / 2
        half = extent if extent is not None else max(30.0, float((cur.max(0) - cur.min(0)).max()) / 2 + 15.0)
    else:
        centre, half = np.zeros(2), extent or 50.0
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m] (scene frame)")
    ax.set_ylabel("y [m]")
    ax.set_title(title if title is not None else f"{scene.scenario_id}  step {t}  ({scene.source})", fontsize=9)
    return ax
