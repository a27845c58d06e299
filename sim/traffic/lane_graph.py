"""Lane graph of a :class:`~drope.data.scene.Scene` for lane-following traffic models.

``LaneGraph.from_scene(scene)`` collects the scene's lane centre lines (scene frame) with
cumulative arc lengths, successors (``exit`` links, plus the mirror of other lanes' ``entry``
links since WOMD sometimes lists a connection on one side only) and left/right neighbours.
It works on generated and real WOMD scenes alike.

Queries (numpy, vectorised over agents where it matters):

* ``project(xy, heading=None) -> (lane, s, lateral)``: nearest lane segment; with headings,
  lanes pointing the other way are penalised so agents snap to their own direction of travel.
* ``pose_at(lane, s) -> (xy, heading)``: position on a centre line (s clamped to the lane).
* ``leader(lane, s, length, query, horizon, route=None) -> (gap, leader_index)``: the nearest
  agent ahead along the lane graph (same lane ahead, then successor lanes breadth-first up to
  ``horizon`` metres, or only along ``route`` when given), bumper-to-bumper gap.
* ``random_route(lane, rng, max_lanes)``: a successor path for an agent to follow.

Lane indices are positions in ``lane_ids`` (the scene's map feature ids), not the ids themselves.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drope.data.types import LaneLink, MapType

FAR = 1e3  # "no leader" gap, m


@dataclass(frozen=True, eq=False)  # identity equality: fields are numpy arrays
class LaneGraph:
    lane_ids: np.ndarray  # [L] int64 map feature ids
    offsets: np.ndarray  # [L+1] int64: lane l owns points[offsets[l]:offsets[l+1]]
    points: np.ndarray  # [P, 2] float64 centre-line points, scene frame
    s: np.ndarray  # [P] float64 arc length of each point along its own lane
    length: np.ndarray  # [L] float64 lane lengths, m
    speed_limit: np.ndarray  # [L] float64 m/s (0: unknown)
    successors: tuple[tuple[int, ...], ...]  # [L] lane indices this lane flows into
    predecessors: tuple[tuple[int, ...], ...]  # [L]
    left: tuple[tuple[int, ...], ...]  # [L] left neighbour lane indices
    right: tuple[tuple[int, ...], ...]  # [L]

    @property
    def num_lanes(self) -> int:
        return int(self.lane_ids.shape[0])

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_scene(cls, scene) -> "LaneGraph":
        lanes = (scene.map_type == int(MapType.lane)).nonzero(as_tuple=True)[0].tolist()
        if not lanes:
            raise ValueError(f"scene {scene.scenario_id}: no lane features to build a lane graph from")
        pts, offs, s_all, lengths = [], [0], [], []
        all_xy = scene.map_points[:, :2].double().cpu().numpy()
        map_off = scene.map_offsets.cpu().numpy()
        for f in lanes:
            p = all_xy[map_off[f] : map_off[f + 1]]
            if len(p) == 1:  # a single-point lane still projects; give it zero length
                p = np.repeat(p, 2, axis=0)
            d = np.linalg.norm(np.diff(p, axis=0), axis=-1)
            s = np.concatenate([[0.0], np.cumsum(d)])
            pts.append(p)
            s_all.append(s)
            offs.append(offs[-1] + len(p))
            lengths.append(s[-1])
        ids = scene.map_id[lanes].cpu().numpy().astype(np.int64)
        index = {int(i): k for k, i in enumerate(ids)}
        succ = [set() for _ in lanes]
        pred = [set() for _ in lanes]
        left = [set() for _ in lanes]
        right = [set() for _ in lanes]
        for a, b, kind, *_ in scene.lane_links.cpu().tolist():
            if a not in index or b not in index:
                continue  # links to lanes outside the scene's map crop
            ia, ib = index[a], index[b]
            if kind == LaneLink.exit:
                succ[ia].add(ib)
                pred[ib].add(ia)
            elif kind == LaneLink.entry:
                pred[ia].add(ib)
                succ[ib].add(ia)
            elif kind == LaneLink.left:
                left[ia].add(ib)
            elif kind == LaneLink.right:
                right[ia].add(ib)
        mph = scene.lane_speed_limit[lanes].double().cpu().numpy()

        def tup(x):
            return tuple(tuple(sorted(v)) for v in x)

        return cls(ids, np.asarray(offs, np.int64), np.concatenate(pts), np.concatenate(s_all),
                   np.asarray(lengths), mph * 0.44704, tup(succ), tup(pred), tup(left), tup(right))

    # ---- geometry ---------------------------------------------------------------------------
    def lane_points(self, lane: int) -> np.ndarray:
        return self.points[self.offsets[lane] : self.offsets[lane + 1]]

    def pose_at(self, lane, s) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``[N, 2]`` and headings ``[N]`` at arc lengths ``s`` on lanes ``lane`` (clamped)."""
        lane = np.atleast_1d(np.asarray(lane, np.int64))
        s = np.broadcast_to(np.atleast_1d(np.asarray(s, np.float64)), lane.shape)
        xy = np.zeros((len(lane), 2))
        h = np.zeros(len(lane))
        for k, (l, sk) in enumerate(zip(lane.tolist(), s.tolist())):
            a, b = self.offsets[l], self.offsets[l + 1]
            ss, p = self.s[a:b], self.points[a:b]
            sk = min(max(sk, 0.0), ss[-1])
            i = int(np.clip(np.searchsorted(ss, sk, side="right") - 1, 0, len(ss) - 2))
            seg = p[i + 1] - p[i]
            t = (sk - ss[i]) / max(ss[i + 1] - ss[i], 1e-9)
            xy[k] = p[i] + t * seg
            h[k] = np.arctan2(seg[1], seg[0])
        return xy, h

    def project(self, xy, heading=None, heading_weight: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest lane for each point ``xy [N, 2]``: ``(lane [N], s [N], lateral [N])``.

        ``lateral`` is signed (positive: left of the centre line). With ``heading [N]`` the
        cost is ``distance + heading_weight * (1 - cos Δheading)`` so an agent prefers its own
        direction of travel over an opposite lane that is slightly closer.
        """
        xy = np.atleast_2d(np.asarray(xy, np.float64))  # [N, 2]
        seg_lane, starts, tree = self._segments()
        # exact projection only on the k segments nearest by midpoint (KD-tree), not all of them
        k = min(self.candidates, len(starts))
        _, g_cand = tree.query(xy, k=k)  # [N, k]
        g_cand = np.asarray(g_cand).reshape(len(xy), k)
        p0, p1 = self.points[starts[g_cand]], self.points[starts[g_cand] + 1]  # [N, k, 2]
        d = p1 - p0
        L2 = np.maximum((d * d).sum(-1), 1e-12)  # [N, k]
        rel = xy[:, None, :] - p0
        t = np.clip((rel * d).sum(-1) / L2, 0.0, 1.0)  # [N, k]
        dist = np.linalg.norm(rel - t[..., None] * d, axis=-1)  # [N, k]
        cost = dist
        if heading is not None:
            h = np.asarray(heading, np.float64).reshape(-1, 1)
            cost = dist + heading_weight * (1.0 - np.cos(h - np.arctan2(d[..., 1], d[..., 0])))
        j = cost.argmin(1)  # [N]
        n = np.arange(len(xy))
        g = g_cand[n, j]
        lane = seg_lane[g]
        s = self.s[starts[g]] + t[n, j] * np.sqrt(L2[n, j])
        cross = d[n, j, 0] * rel[n, j, 1] - d[n, j, 1] * rel[n, j, 0]
        lateral = np.sign(cross) * dist[n, j]
        return lane, s, lateral

    candidates = 64  # segments examined per projected point

    def _segments(self):
        """(lane of each segment [G], index of its first point [G], KD-tree of segment midpoints)."""
        cache = self.__dict__.get("_seg_cache")
        if cache is None:
            from scipy.spatial import cKDTree

            seg_lane = np.repeat(np.arange(self.num_lanes), np.diff(self.offsets) - 1)
            starts = np.delete(np.arange(len(self.points)), self.offsets[1:] - 1)
            mid = (self.points[starts] + self.points[starts + 1]) / 2
            cache = (seg_lane, starts, cKDTree(mid))
            object.__setattr__(self, "_seg_cache", cache)  # frozen dataclass: a lazily built, derived index
        return cache

    # ---- topology ------------------------------------------------------------------------------
    def random_route(self, lane: int, rng: np.random.Generator, max_lanes: int = 6) -> list[int]:
        route = [int(lane)]
        while self.successors[route[-1]] and len(route) < max_lanes:
            route.append(int(rng.choice(self.successors[route[-1]])))
        return route

    def leader(self, lane, s, length, query, horizon: float = 80.0, route=None) -> tuple[float, int]:
        """Nearest agent ahead of agent ``query`` along the lane graph.

        ``lane [N]``, ``s [N]``, ``length [N]``: every agent's lane index, arc length and box
        length (agents off the graph: lane -1). Searches the query's lane ahead of it, then
        successors breadth-first (or only ``route``, a list of lane indices starting with the
        query's lane) up to ``horizon`` metres. Returns ``(gap, index)``: bumper-to-bumper gap
        and the leader's agent index, ``(FAR, -1)`` when there is none.
        """
        lane = np.asarray(lane)
        s = np.asarray(s, np.float64)
        length = np.asarray(length, np.float64)
        q_lane, q_s, q_half = int(lane[query]), float(s[query]), float(length[query]) / 2
        best_gap, best = FAR, -1
        frontier = [(q_lane, 0.0, 0)]  # (lane, offset of the lane start relative to q's lane start, route pos)
        seen = set()
        while frontier:
            l, off, k = frontier.pop(0)
            if l in seen:
                continue
            seen.add(l)
            on = np.flatnonzero(lane == l)
            ahead = s[on] + off
            mask = (on != query) & ((ahead > q_s) if l == q_lane and off == 0.0 else True)
            if mask.any():
                cand = on[mask]
                gaps = ahead[mask] - q_s - q_half - length[cand] / 2
                j = int(gaps.argmin())
                if gaps[j] < best_gap:
                    best_gap, best = float(gaps[j]), int(cand[j])
            nxt_off = off + float(self.length[l])
            # an agent whose centre is on a later lane starts at least its half length before it
            if nxt_off - q_s > horizon or nxt_off - q_s - q_half - length.max(initial=0.0) / 2 > best_gap:
                continue  # nothing further along can be nearer
            if route is not None:
                nxt = [route[k + 1]] if k + 1 < len(route) else []
            else:
                nxt = self.successors[l]
            frontier += [(int(m), nxt_off, k + 1) for m in nxt]
        return best_gap, best
