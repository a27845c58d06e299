"""Scene drawing built from small reusable pieces.

``draw_map`` draws the static map once; ``draw_agents`` returns its collections so that later
stages (animations) can update vertices in place; ``draw_trajectories`` and
``draw_predictions`` overlay histories, futures, predicted modes and rollouts. Everything is
drawn with a handful of Line/PolyCollections (one path per polyline, RGBA arrays instead of
colour names) because per-segment artists and colour parsing dominate the frame time.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import to_rgba, to_rgba_array
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

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
SIGNAL_COLORS = {"stop": "#e41a1c", "caution": "#ffbf00", "go": "#4daf4a", "unknown": "#999999"}
_YELLOW = {
    RoadLineType.TYPE_BROKEN_SINGLE_YELLOW, RoadLineType.TYPE_BROKEN_DOUBLE_YELLOW,
    RoadLineType.TYPE_SOLID_SINGLE_YELLOW, RoadLineType.TYPE_SOLID_DOUBLE_YELLOW,
    RoadLineType.TYPE_PASSING_DOUBLE_YELLOW,
}
_BROKEN = {RoadLineType.TYPE_BROKEN_SINGLE_WHITE, RoadLineType.TYPE_BROKEN_SINGLE_YELLOW, RoadLineType.TYPE_BROKEN_DOUBLE_YELLOW}
_LINE_STYLES = {
    "lane": dict(colors="#c8c8c8", linewidths=0.6, linestyles="dotted", zorder=1),
    "edge": dict(colors="#303030", linewidths=1.3, zorder=2),
    "white": dict(colors="#8c8c8c", linewidths=0.8, zorder=2),
    "yellow": dict(colors="#d4a017", linewidths=0.9, zorder=2),
    "broken": dict(colors="#a0a0a0", linewidths=0.8, linestyles="dashed", zorder=2),
}
_POLY_STYLES = {
    MapType.crosswalk: dict(facecolors="#e6e6e6", edgecolors="#b0b0b0", hatch="///"),
    MapType.speed_bump: dict(facecolors="#f4d9a6", edgecolors="#c8a060"),
    MapType.driveway: dict(facecolors="#efefef", edgecolors="#cccccc"),
}


def signal_category(state: int) -> str:
    """'stop' / 'caution' / 'go' / 'unknown' for a SignalState (arrows and flashing included)."""
    name = SignalState(state).name
    for key in ("STOP", "CAUTION", "GO"):
        if key in name:
            return key.lower()
    return "unknown"


def agent_colors(scene: Scene, agents: Sequence[int] | torch.Tensor) -> np.ndarray:
    """``[N, 4]`` RGBA per agent: by type, the SDC in orange."""
    types = scene.agent_type.tolist()
    return to_rgba_array(
        [SDC_COLOR if int(i) == scene.sdc_index else TYPE_COLORS[ObjectType(types[int(i)])] for i in agents]
    ).reshape(-1, 4)


def draw_map(ax: Axes, scene: Scene, *, step: int | None = None, show_signals: bool = True) -> list:
    """Lanes, road lines, road edges, crosswalks/speed bumps/driveways, stop signs, signal states at ``step``.

    Returns the artists (static; draw once per figure).
    """
    pts = scene.map_points[:, :2].cpu().numpy()
    off = scene.map_offsets.tolist()
    mtype, sub = scene.map_type.tolist(), scene.map_subtype.tolist()
    groups: dict[str, list[np.ndarray]] = {k: [] for k in _LINE_STYLES}
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
            groups["broken" if sub[f] in _BROKEN else ("yellow" if sub[f] in _YELLOW else "white")].append(p)
        elif t == MapType.stop_sign:
            stops.append(p[0])
        elif t in polys and len(p) >= 3:
            polys[t].append(p)
    artists: list = []
    for key, lines in groups.items():
        if lines:
            artists.append(ax.add_collection(LineCollection(lines, **_LINE_STYLES[key]), autolim=False))
    for t, ps in polys.items():
        if ps:
            pc = PolyCollection(ps, linewidths=0.5, zorder=0, **_POLY_STYLES[MapType(t)])
            artists.append(ax.add_collection(pc, autolim=False))
    if stops:
        s = np.asarray(stops)
        artists.append(ax.scatter(s[:, 0], s[:, 1], marker="8", s=40, c="#c00000", edgecolors="white",
                                  linewidths=0.5, zorder=4, label="stop sign"))
    if show_signals and scene.signal_valid.shape[1]:
        t = scene.current_index if step is None else step
        valid = scene.signal_valid[t].cpu().numpy()
        if valid.any():
            xy = scene.signal_stop_point[t, :, :2].cpu().numpy()[valid]
            colors = [SIGNAL_COLORS[signal_category(int(s))] for s in scene.signal_state[t].cpu().numpy()[valid]]
            artists.append(ax.scatter(xy[:, 0], xy[:, 1], s=30, c=colors, marker="s", edgecolors="black",
                                      linewidths=0.4, zorder=5))
    return artists


def agent_box_vertices(scene: Scene, step: int, agents: torch.Tensor | None = None) -> np.ndarray:
    """``[N, 4, 2]`` box corners of ``agents`` (default: all) at ``step`` (front-left first, CCW)."""
    idx = torch.arange(scene.num_agents) if agents is None else agents
    size = scene.agent_size[idx, step]
    return box_corners(scene.agent_pos[idx, step], scene.agent_heading[idx, step], size[:, 0], size[:, 1]).numpy()


def draw_agents(ax: Axes, scene: Scene, step: int | None = None, *, agents: torch.Tensor | None = None,
                alpha: float = 0.85, heading_ticks: bool = True) -> list:
    """Oriented boxes coloured by type for ``agents`` (default: those valid at ``step``, default current).

    The SDC is orange; tracks to predict get a black outline; a short line from each centre to the
    front edge shows the heading. Returns ``[boxes PolyCollection, ticks LineCollection]`` (the
    latter only with ``heading_ticks``), whose vertices/segments can be updated in place.
    """
    t = scene.current_index if step is None else step
    idx = scene.agent_valid[:, t].nonzero(as_tuple=True)[0] if agents is None else torch.as_tensor(agents)
    verts = agent_box_vertices(scene, t, idx)  # [N, 4, 2]
    face = agent_colors(scene, idx.tolist())
    ttp = torch.isin(idx, scene.tracks_to_predict).numpy()
    edge = np.where(ttp[:, None], to_rgba("black"), to_rgba("white"))
    boxes = PolyCollection(list(verts), facecolors=face, edgecolors=edge, linewidths=0.8, alpha=alpha, zorder=6)
    out = [ax.add_collection(boxes, autolim=False)]
    if heading_ticks:
        centre = scene.agent_pos[idx, t].numpy()  # [N, 2]
        front = (verts[:, 0] + verts[:, 3]) / 2  # [N, 2] middle of the front edge
        ticks = LineCollection(list(np.stack([centre, front], axis=1)), colors="black", linewidths=0.6, zorder=7)
        out.append(ax.add_collection(ticks, autolim=False))
    return out


def _valid_runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], valid.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def draw_trajectories(ax: Axes, xy: np.ndarray | torch.Tensor, valid: np.ndarray | torch.Tensor | None = None, *,
                      color="#1f77b4", linewidth: float | Sequence[float] = 1.0, alpha: float | None = 0.8,
                      linestyle="solid", zorder: int = 3) -> LineCollection:
    """Polylines ``xy [N, T, 2]`` (history, logged future, rollouts); ``valid [N, T]`` gaps break the line.

    ``color``: one colour or ``N`` colours (names or an ``[N, 4]`` RGBA array); ``linewidth``: one
    width or ``N`` widths. Returns the LineCollection (one path per valid run).
    """
    xy = np.asarray(xy, dtype=np.float64)
    n = xy.shape[0]
    valid = np.ones(xy.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    # one colour: a name or an RGB(A) tuple of numbers; anything else is a colour per trajectory
    per_line = (isinstance(color, np.ndarray) and color.ndim == 2) or (
        isinstance(color, (list, tuple)) and not all(isinstance(c, (int, float, np.number)) for c in color)
    )
    rgba = to_rgba_array(color) if per_line else np.tile(to_rgba(color), (n, 1))  # [N, 4]
    if rgba.shape[0] != n:
        raise ValueError(f"draw_trajectories: {rgba.shape[0]} colours for {n} trajectories")
    widths = np.broadcast_to(np.asarray(linewidth, dtype=float), (n,))
    segs, cols, lws = [], [], []
    for k in range(n):
        for a, b in _valid_runs(valid[k]):
            if b - a >= 2:
                segs.append(xy[k, a:b])
                cols.append(rgba[k])
                lws.append(widths[k])
    lc = LineCollection(segs, colors=np.asarray(cols).reshape(-1, 4), linewidths=lws, linestyles=linestyle,
                        zorder=zorder, capstyle="round", joinstyle="round")
    if alpha is not None:
        lc.set_alpha(alpha)
    ax.add_collection(lc, autolim=False)
    return lc


def draw_predictions(ax: Axes, xy: np.ndarray | torch.Tensor, prob: np.ndarray | torch.Tensor, *, cmap: str = "plasma",
                     label_prob: bool = True, min_label_prob: float = 0.05, zorder: int = 7) -> list:
    """Predicted modes ``xy [R, K, T, 2]`` with ``prob [R, K]`` (rows sum to 1).

    Per track, modes are coloured by probability rank (``cmap``), with width and opacity growing
    with the probability; the end point of each mode is marked and labelled with its
    probability (if ≥ ``min_label_prob``). Returns the artists.
    """
    import matplotlib

    xy, prob = np.asarray(xy, dtype=np.float64), np.asarray(prob, dtype=np.float64)
    if xy.ndim != 4 or xy.shape[-1] != 2 or prob.shape != xy.shape[:2]:
        raise ValueError(f"draw_predictions wants xy [R, K, T, 2] and prob [R, K], got {xy.shape} and {prob.shape}")
    R, K = prob.shape
    if R * K == 0:
        return []
    cm = matplotlib.colormaps[cmap]
    rank = np.argsort(np.argsort(prob, axis=1), axis=1)  # [R, K] 0 = least likely
    rgba = cm(0.15 + 0.7 * rank / max(K - 1, 1))  # [R, K, 4]
    rgba[..., 3] = 0.35 + 0.65 * np.clip(prob, 0, 1)
    order = np.argsort(prob.reshape(-1))  # draw likely modes on top
    lines = LineCollection(list(xy.reshape(R * K, -1, 2)[order]), colors=rgba.reshape(-1, 4)[order],
                           linewidths=(0.8 + 2.5 * np.clip(prob, 0, 1)).reshape(-1)[order], zorder=zorder,
                           capstyle="round", joinstyle="round")
    end = xy[:, :, -1].reshape(-1, 2)
    out = [ax.add_collection(lines, autolim=False),
           ax.scatter(end[:, 0], end[:, 1], color=rgba.reshape(-1, 4), s=8, zorder=zorder + 1)]
    if label_prob:
        for (r, k) in zip(*np.nonzero(prob >= min_label_prob)):
            out.append(ax.annotate(f"{prob[r, k]:.2f}", xy[r, k, -1], fontsize=6, color=rgba[r, k], zorder=zorder + 2,
                                   xytext=(2, 2), textcoords="offset points"))
    return out


def draw_legend(ax: Axes, scene: Scene, step: int | None = None, *, loc: str = "upper right", fontsize: float = 7):
    """Legend for the agent types present, the SDC, tracks to predict and the signal states shown."""
    t = scene.current_index if step is None else step
    present = sorted(set(scene.agent_type[scene.agent_valid[:, t]].tolist()))
    handles = [Patch(color=SDC_COLOR, label="SDC")]
    handles += [Patch(color=TYPE_COLORS[ObjectType(ty)], label=ObjectType(ty).name.removeprefix("TYPE_").lower())
                for ty in present]
    handles.append(Patch(facecolor="white", edgecolor="black", label="to predict"))
    handles.append(Line2D([], [], color="gray", lw=1.2, label="history"))
    handles.append(Line2D([], [], color="gray", lw=0.9, ls="--", alpha=0.6, label="future (logged)"))
    if scene.signal_valid.shape[1] and scene.signal_valid[t].any():
        cats = {signal_category(int(s)) for s in scene.signal_state[t][scene.signal_valid[t]].tolist()}
        handles += [Line2D([], [], ls="", marker="s", markersize=5, markerfacecolor=SIGNAL_COLORS[c],
                           markeredgecolor="black", markeredgewidth=0.4, label=f"signal {c}")
                    for c in ("stop", "caution", "go", "unknown") if c in cats]
    if bool((scene.map_type == MapType.stop_sign).any()):
        handles.append(Line2D([], [], ls="", marker="8", markersize=6, markerfacecolor="#c00000",
                              markeredgecolor="white", label="stop sign"))
    return ax.legend(handles=handles, loc=loc, fontsize=fontsize, framealpha=0.85)


def plot_scene(scene: Scene, ax: Axes | None = None, *, step: int | None = None, history: bool = True,
               future: bool = True, agents: torch.Tensor | None = None, extent: float | None = None,
               title: str | None = None, show_signals: bool = True, legend: bool = False, figsize=(8, 8)) -> Axes:
    """Map, agents (boxes at ``step``, default current), their history and logged future.

    ``agents``: indices to draw (default: valid at ``step``). ``extent``: half-width of the view in
    metres around the drawn agents' centre (auto if None). Returns the Axes, on which predictions
    (:func:`draw_predictions`) or rollouts (:func:`draw_trajectories`) can be overlaid.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize)
    t = scene.current_index if step is None else step
    if not 0 <= t < scene.num_steps:
        raise ValueError(f"scene {scene.scenario_id!r}: step {t} outside [0, {scene.num_steps})")
    draw_map(ax, scene, step=t, show_signals=show_signals)
    sel = scene.agent_valid[:, t].nonzero(as_tuple=True)[0] if agents is None else torch.as_tensor(agents)
    pos, valid = scene.agent_pos[sel].cpu().numpy(), scene.agent_valid[sel].cpu().numpy()
    colors = agent_colors(scene, sel.tolist())
    if history:
        draw_trajectories(ax, pos[:, : t + 1], valid[:, : t + 1], color=colors, linewidth=1.2, alpha=0.9)
    if future and t + 1 < scene.num_steps:
        draw_trajectories(ax, pos[:, t:], valid[:, t:], color=colors, linewidth=0.9, alpha=0.45, linestyle="dashed")
    draw_agents(ax, scene, t, agents=sel)
    cur = pos[valid[:, t], t] if len(sel) else np.zeros((0, 2))
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
    if legend:
        draw_legend(ax, scene, t)
    return ax
