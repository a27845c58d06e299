"""IDM lane following as array operations over rollouts × agents (the ``idm`` policy).

Same model as the per-agent reference :class:`~drope.sim.policies.idm.IDMReference`
(``idm_reference``; read its docstring for the behaviour), computed for every driver of every
rollout at once: lane projection, route bookkeeping (re-anchoring), leader search along the
route through successor lanes, the corridor and red-light gaps, the curve speed cap, IDM and the
target pose along the route. Each quantity uses the reference's formula in the reference's dtype
(float64 numpy for geometry, float32 for the corridor and red lights) so the trajectories
are the reference's to float rounding; ``tests/test_sim_idm_vectorised.py`` checks this step by
step. Per-scene structure (lane graph, segment arrays, default routes, red-light stop lanes) is
built once per scene and reused over rollouts and resets.

Deliberate differences: none in behaviour. Implementation notes the equality relies on:

* transcendental float32 torch kernels (``cos``/``sin``) give the same bits only when each
  rollout row is its own inner loop, as in the reference's per-rollout call (``_rowwise``), and
  0-d calls use the scalar kernel (``_scalar_cos_sin``);
* the corridor and red-light gaps use the reference's float32 elementwise arithmetic in numpy
  (same rounding as torch: no fused multiply-add), only the drivers' rows, ``cos``/``sin`` still
  from torch;
* route draws at reset consume the rollout generator in the reference's order;
* the lane projection reuses each agent's cached KD-tree candidates only where bounds prove the
  reference's answer (:meth:`SceneTables.project_near`), else queries afresh; an exact tie of
  cost between two different segments could then resolve in the cache's order (not seen on
  the test scenes).
"""
from __future__ import annotations

import numpy as np
import torch

from drope.data.scene import Scene
from drope.data.types import ObjectType
from drope.sim.events import STOP_STATES
from drope.sim.policies.base import POLICIES
from drope.sim.policies.idm import _DRIVERS, IDMPolicyConfig
from drope.sim.state import Actions, SimState
from drope.sim.traffic import FAR, PARAMS_BY_TYPE, IDMParams, LaneGraph

Tensor = torch.Tensor
MAX_ROUTE = 6  # lanes per route (LaneGraph.random_route's and the reference's re-anchoring limit)


def _rowwise(fn, x: Tensor) -> Tensor:
    """``fn(x)`` for ``x [B, N]`` with each row its own inner loop (bits equal a per-row call)."""
    if x.shape[0] == 1:
        return fn(x)
    buf = x.new_empty(x.shape[0], x.shape[1] + 1)
    buf[:, : x.shape[1]] = x
    return fn(buf[:, : x.shape[1]])


def _scalar_cos_sin(h: Tensor) -> tuple[Tensor, Tensor]:
    """cos, sin of ``h [M]`` through torch's scalar kernel (the reference takes them of 0-d tensors)."""
    buf = h.new_empty(len(h), 2)
    buf[:, 0] = h
    col = buf[:, 0]  # stride 2: never the vectorised kernel
    return torch.cos(col), torch.sin(col)


class SceneTables:
    """Per-scene arrays of the lane graph the vectorised policy indexes (built once per scene)."""

    def __init__(self, scene: Scene) -> None:
        g = self.graph = LaneGraph.from_scene(scene)
        self.scene = scene
        L = g.num_lanes
        self.num_lanes = L
        self.length = g.length
        self.lane_start = g.offsets[:-1]
        self.lane_last = g.offsets[1:] - 1  # index of each lane's last point
        self.s_end = g.s[self.lane_last]
        npts = np.diff(g.offsets)
        point_lane = np.repeat(np.arange(L), npts)
        # a strictly increasing key over all points (lanes 1 m apart) for one global searchsorted
        self.base = np.concatenate([[0.0], np.cumsum(g.length + 1.0)[:-1]])
        self.key = g.s + self.base[point_lane]
        nxt = np.minimum(np.arange(len(g.points)) + 1, len(g.points) - 1)
        seg = g.points[nxt] - g.points
        self.seg = seg  # [P, 2] segment from each point to the next (garbage at a lane's last point)
        self.seg_h = np.arctan2(seg[:, 1], seg[:, 0])
        # the reference's re-anchored route: the lane, then always the first successor
        self.default_route = np.full((L, MAX_ROUTE), -1, np.int64)
        self.default_len = np.zeros(L, np.int64)
        for lane in range(L):
            r = [lane]
            while g.successors[r[-1]] and len(r) < MAX_ROUTE:
                r.append(int(g.successors[r[-1]][0]))
            self.default_route[lane, : len(r)] = r
            self.default_len[lane] = len(r)
        self._stops: dict[int, tuple | None] = {}
        seg_lane, starts, self.tree = g._segments()
        self.seg_lane, self.seg_start = seg_lane, starts
        self.mid = self.tree.data
        self.half = np.linalg.norm(g.points[starts + 1] - g.points[starts], axis=-1) / 2  # [G] half segment lengths
        self.half_max = float(self.half.max(initial=0.0))
        self.k = min(g.candidates, len(starts))

    # ---- projection ----------------------------------------------------------------------------------
    def segment_cost(self, xy: np.ndarray, h: np.ndarray, seg: np.ndarray, heading_weight: float = 4.0):
        """``LaneGraph.project``'s cost, arc length and lateral offset of points ``xy [..., 2]``
        (headings ``h [...]``) on segments ``seg [...]`` (same arithmetic, any shape)."""
        g = self.graph
        st = self.seg_start[seg]
        p0 = g.points[st]
        d = g.points[st + 1] - p0
        L2 = np.maximum((d * d).sum(-1), 1e-12)
        rel = xy - p0
        t = np.clip((rel * d).sum(-1) / L2, 0.0, 1.0)
        dist = np.linalg.norm(rel - t[..., None] * d, axis=-1)
        cost = dist + heading_weight * (1.0 - np.cos(h - np.arctan2(d[..., 1], d[..., 0])))
        return cost, g.s[st] + t * np.sqrt(L2)

    def project_full(self, xy: np.ndarray, h: np.ndarray):
        """``LaneGraph.project(xy, h)`` (its KD-tree candidates and argmin) as ``(lane, s, column of
        the winner)`` plus, for :meth:`project_near`, the candidates ``[N, k]``, the k-th candidate
        distance and its margin to the (k+1)-th ``[N]`` (inf when the map has no more segments)."""
        k = self.k
        q = min(k + 1, len(self.seg_start))
        dk, cand = self.tree.query(xy, k=q)
        cand = np.asarray(cand).reshape(len(xy), q)
        dk = np.asarray(dk).reshape(len(xy), q)
        margin = dk[:, k] - dk[:, k - 1] if q > k else np.full(len(xy), np.inf)
        cand = cand[:, :k]
        cost, s = self.segment_cost(xy[:, None, :], h[:, None], cand)
        n = np.arange(len(xy))
        j = cost.argmin(1)
        return self.seg_lane[cand[n, j]], s[n, j], j, cand, dk[:, k - 1], margin

    def project_near(self, xy, h, cand, centre, radius, margin, last):
        """The projection of :meth:`project_full` from candidates ``cand [N, k]`` cached at
        ``centre`` (k-th distance ``radius``, ``margin`` to the next), ``last`` the column of the
        previous winner; ``ok=False`` where that cannot be proven to be the reference's answer.

        The reference takes the least cost over the k segments with the nearest midpoints. Only
        candidates whose lower bound (midpoint distance − half length) is below ``U``, the cost
        of the nearest or of the previous winner, can win. The answer is provably the
        reference's when either (a) the cached set is still the k nearest (``margin`` exceeds
        twice the distance moved) or (b) every segment the cache lacks lies ``>= radius − moved``
        away, farther than ``U`` plus the longest half segment. Exact ties of cost between two
        different segments may resolve in another order (the cache's, not the new query's)."""
        N, k = cand.shape
        rel = self.mid[cand] - xy[:, None]
        dm = np.sqrt((rel * rel).sum(-1))  # [N, k]
        lb = dm - self.half[cand]
        n = np.arange(N)
        u0, _ = self.segment_cost(xy, h, cand[n, dm.argmin(1)])
        u1, _ = self.segment_cost(xy, h, cand[n, last])
        U = np.minimum(u0, u1)
        moved = np.sqrt(((xy - centre) ** 2).sum(-1))
        ok = (margin > 2 * moved + 1e-6) | (U + self.half_max + 1e-6 < radius - moved)
        rows, cols = np.nonzero((lb <= U[:, None]) & ok[:, None])
        seg = cand[rows, cols]
        cost, s = self.segment_cost(xy[rows], h[rows], seg)
        order = np.lexsort((cols, cost, rows))  # per row: least cost, then the earlier candidate
        first = order[np.unique(rows[order], return_index=True)[1]]
        lane, s_out, col = np.zeros(N, np.int64), np.zeros(N), np.zeros(N, np.int64)
        r = rows[first]
        lane[r], s_out[r], col[r] = self.seg_lane[seg[first]], s[first], cols[first]
        return lane, s_out, col, ok

    def pose_at(self, lane: np.ndarray, s: np.ndarray, heading_only: bool = False):
        """``LaneGraph.pose_at`` for arrays (same segment choice and arithmetic)."""
        g = self.graph
        a, last = self.lane_start[lane], self.lane_last[lane]
        sk = np.minimum(np.maximum(s, 0.0), self.s_end[lane])
        i = np.searchsorted(self.key, sk + self.base[lane], side="right") - 1
        # the key's rounding may shift the answer at a point's exact arc length: fix up to the
        # reference's "last point with s <= sk" of this lane
        while True:
            down = (i > a) & (g.s[i] > sk)
            up = (i < last) & (g.s[np.minimum(i + 1, len(g.s) - 1)] <= sk)
            if not (down.any() or up.any()):
                break
            i = i - down + (up & ~down)
        i = a + np.clip(i - a, 0, last - a - 1)
        if heading_only:
            return self.seg_h[i]
        t = (sk - g.s[i]) / np.maximum(g.s[i + 1] - g.s[i], 1e-9)
        xy = g.points[i] + t[:, None] * self.seg[i]
        return xy, self.seg_h[i]

    def along_route(self, route: np.ndarray, n: np.ndarray, s: np.ndarray, heading_only: bool = False):
        """Pose at arc length ``s [M]`` along routes ``route [M, K]`` (``n [M]`` lanes each), past
        the route's end extended straight (the reference's ``along_route``, same subtractions)."""
        M, K = route.shape
        local = np.array(s, np.float64, copy=True)
        pick = np.full(M, -1, np.int64)
        for k in range(K):
            free = (pick < 0) & (k < n)
            if not free.any():
                break
            L = self.length[np.maximum(route[:, k], 0)]
            take = free & ((local <= L) | (k == n - 1))
            pick[take] = k
            go = free & ~take
            local[go] -= L[go]
        lane = route[np.arange(M), pick]
        L = self.length[lane]
        if heading_only:
            return self.pose_at(lane, np.minimum(local, L), heading_only=True)
        xy, h = self.pose_at(lane, np.minimum(local, L))
        beyond = np.maximum(0.0, local - L)
        return xy + beyond[:, None] * np.stack([np.cos(h), np.sin(h)], -1), h

    def stops(self, t: int):
        """(stop points [S, 2], stop lane headings [S] float32) of STOP signals at step ``t``, or None."""
        if t not in self._stops:
            sc = self.scene
            on = sc.signal_valid[t] & torch.isin(sc.signal_state[t], torch.tensor(STOP_STATES))
            if not bool(on.any()):
                self._stops[t] = None
            else:
                stops = sc.signal_stop_point[t, on, :2]
                lane, s, _ = self.graph.project(stops.double().numpy())
                _, lane_h = self.graph.pose_at(lane, s)
                self._stops[t] = (stops, torch.tensor(lane_h, dtype=torch.float32))
        return self._stops[t]


@POLICIES.register("idm")
class VectorisedIDM:
    """The IDM policy over all rollouts × agents at once (see the module docstring)."""

    def __init__(self, dynamics, cfg: IDMPolicyConfig = IDMPolicyConfig()) -> None:
        self.dynamics, self.cfg = dynamics, cfg
        self.tables: SceneTables | None = None

    # ---- reset ------------------------------------------------------------------------------------------
    def reset(self, scene: Scene, state: SimState, rng: torch.Generator) -> None:
        if self.tables is None or self.tables.scene is not scene:
            self.tables = SceneTables(scene)
        T, g = self.tables, self.tables.graph
        self.scene = scene
        self._pose = torch.cat([scene.agent_pos, scene.agent_heading[..., None], scene.agent_vel], -1)
        nrng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=rng)))
        B, A = state.batch, state.num_agents
        self.drivers = torch.isin(state.type[0], torch.tensor(_DRIVERS)) & state.valid[0]
        pos, h = state.pos[0].double().numpy(), state.heading[0].double().numpy()
        lane, _, lat = g.project(pos, h)
        speed0 = state.speed[0].numpy()
        self.route = np.full((B, A, MAX_ROUTE), -1, np.int64)
        self.route_len = np.zeros((B, A), np.int64)
        for b in range(B):  # the reference's draw order: rollout-major, every agent
            for a in range(A):
                r = g.random_route(int(lane[a]), nrng)
                self.route[b, a, : len(r)] = r
                self.route_len[b, a] = len(r)
        limit = g.speed_limit[lane]
        v_des = np.where(limit > 0, limit, np.maximum(self.cfg.default_speed, speed0))
        parked = (speed0 < self.cfg.parked_speed) & (np.abs(lat) > self.cfg.parked_lateral)
        self.v_des = np.where(parked, 0.0, v_des)
        params = [PARAMS_BY_TYPE.get(ObjectType(int(t)), IDMParams()) for t in state.type[0].tolist()]
        self.p = {f: np.array([getattr(p, f) for p in params]) for f in
                  ("a_max", "b_comf", "b_max", "s0", "time_headway", "delta")}
        self.p["sqrt_ab"] = np.array([(p.a_max * p.b_comf) ** 0.5 for p in params])
        # projection cache: each agent's KD-tree candidates, where they were queried, k-th distance
        self._cache = {"cand": np.zeros((B, A, T.k), np.int64), "centre": np.zeros((B, A, 2)),
                       "radius": np.zeros((B, A)), "margin": np.zeros((B, A)), "last": np.zeros((B, A), np.int64),
                       "have": np.zeros((B, A), bool)}

    def _project(self, pb: np.ndarray, pa: np.ndarray, xy: np.ndarray, h: np.ndarray):
        """``LaneGraph.project(xy, h)`` (lane, s) of agents ``(pb, pa)``: from each agent's cached
        candidates where that is provably the same answer, else a fresh KD-tree query (re-cached)."""
        T, c = self.tables, self._cache
        lane, s = np.zeros(len(pb), np.int64), np.zeros(len(pb))
        ok = c["have"][pb, pa]
        hv = np.flatnonzero(ok)
        if len(hv):
            b, a = pb[hv], pa[hv]
            lane[hv], s[hv], c["last"][b, a], ok[hv] = T.project_near(
                xy[hv], h[hv], c["cand"][b, a], c["centre"][b, a], c["radius"][b, a], c["margin"][b, a],
                c["last"][b, a])
        redo = np.flatnonzero(~ok)
        if len(redo):
            b, a = pb[redo], pa[redo]
            lane[redo], s[redo], c["last"][b, a], c["cand"][b, a], c["radius"][b, a], c["margin"][b, a] = \
                T.project_full(xy[redo], h[redo])
            c["centre"][b, a] = xy[redo]
            c["have"][b, a] = True
        return lane, s

    # ---- gaps of the drivers (float32, the reference's elementwise arithmetic in numpy) -----------------
    # float32 +, -, * and comparisons round the same in numpy as in torch (no fused multiply-add),
    # and numpy's per-call overhead is a fraction of torch's at these sizes
    def _corridor_gaps(self, db, da, pos, c, s, vel, size, valid):
        """Bumper gap ``[M]`` of drivers ``(db, da)`` to the nearest valid agent of their rollout in
        the corridor ahead, and the approach rate (the reference's ``_corridor_gaps`` rows)."""
        rel = pos[db] - pos[db, da][:, None]  # [M, A, 2] j relative to the driver
        ci, si = c[db, da][:, None], s[db, da][:, None]
        x = rel[..., 0] * ci + rel[..., 1] * si
        y = -rel[..., 0] * si + rel[..., 1] * ci
        half_w = size[..., 1] / 2  # [B, A]
        inside = (x > 0) & (np.abs(y) < half_w[db, da][:, None] + half_w[db] + np.float32(self.cfg.corridor_margin))
        inside &= valid[db]  # the drivers themselves are valid
        inside[np.arange(len(db)), da] = False
        gap = np.where(inside, x - (size[db, da, 0][:, None] + size[db, :, 0]) / 2, np.float32(FAR))
        j = gap.argmin(1)  # first minimum, as torch's min(dim)
        m = np.arange(len(db))
        cs = np.stack([ci[:, 0], si[:, 0]], -1)
        v_self = (vel[db, da] * cs).sum(-1)
        v_lead = (vel[db, j] * cs).sum(-1)
        return gap[m, j], v_self - v_lead

    def _red_light_gaps(self, t: int, db, da, pos, heading: Tensor, c, s, size):
        """Gap ``[M]`` of drivers ``(db, da)`` to the nearest STOP-signal stop point ahead on an
        aligned lane (the reference's ``_red_light_gaps`` rows; FAR if none)."""
        st = self.tables.stops(min(t, self.scene.num_steps - 1))
        if st is None:
            return np.full(len(db), FAR, np.float32)
        stops, lane_h = st
        B, A = heading.shape
        dh = (heading[:, :, None] - lane_h[None, None]).reshape(B, -1)
        aligned = (_rowwise(torch.cos, dh).reshape(B, A, -1) > 0.7).numpy()[db, da]  # [M, S]
        rel = stops.numpy()[None] - pos[db, da][:, None]  # [M, S, 2]
        ci, si = c[db, da][:, None], s[db, da][:, None]
        x = rel[..., 0] * ci + rel[..., 1] * si
        y = -rel[..., 0] * si + rel[..., 1] * ci
        gap = x - size[db, da, 0][:, None] / 2
        ahead = (gap > -0.5) & (np.abs(y) < 2.0) & aligned
        return np.where(ahead, gap, np.float32(FAR)).min(1)

    # ---- action -----------------------------------------------------------------------------------------
    def act(self, state: SimState, rng: torch.Generator) -> Actions:
        B, A, dt = state.batch, state.num_agents, self.scene.dt
        t_next = min(state.step + 1, self.scene.num_steps - 1)
        target_pos = state.pos + state.vel * dt  # non-drivers: constant velocity ...
        target_h = state.heading.clone()
        drive = self.drivers[None] & state.valid  # [B, A]
        if bool(drive.any()):
            self._drive(state, drive, target_pos, target_h, dt)
        ctrl = self.dynamics.track(state, target_pos, target_h, dt)
        replay = ~drive & self.scene.agent_valid[None, :, t_next] & state.valid
        return Actions(ctrl=ctrl, ctrl_mask=state.valid & ~replay, pose=self._pose[:, t_next].expand(B, A, 5),
                       pose_mask=replay, next_valid=state.valid)

    def _drive(self, state: SimState, drive: Tensor, target_pos: Tensor, target_h: Tensor, dt: float) -> None:
        cfg, T = self.cfg, self.tables
        B, A = state.batch, state.num_agents
        Lg = T.num_lanes
        rows = drive.any(1)  # rollouts with a driver (the reference skips the others)
        valid = (state.valid & rows[:, None]).numpy()
        pb, pa = np.nonzero(valid)
        pos64 = state.pos.double().numpy()
        h64 = state.heading.double().numpy()
        # ---- projection of every valid agent ----
        lane, s = self._project(pb, pa, pos64[pb, pa], h64[pb, pa])
        foot, foot_h = T.pose_at(lane, s)
        rel = pos64[pb, pa] - foot
        along = rel[:, 0] * np.cos(foot_h) + rel[:, 1] * np.sin(foot_h)
        lat_v = -rel[:, 0] * np.sin(foot_h) + rel[:, 1] * np.cos(foot_h)
        s = s + np.maximum(along, 0.0)
        on_v = np.abs(lat_v) < cfg.off_lane
        LANE = np.full((B, A), -1, np.int64)  # projected lane (valid agents)
        LANE[pb, pa] = lane
        LALL = np.full((B, A), -1, np.int64)  # lane_all of the reference: -1 off the graph
        LALL[pb[on_v], pa[on_v]] = lane[on_v]
        S = np.zeros((B, A))
        S[pb, pa] = s
        LAT = np.zeros((B, A))
        LAT[pb, pa] = lat_v
        # ---- corridor and red-light gaps (float32) ----
        db, da = np.nonzero(drive.numpy())
        c, sn = _rowwise(torch.cos, state.heading).numpy(), _rowwise(torch.sin, state.heading).numpy()
        pos32, vel32, size32 = state.pos.numpy(), state.vel.numpy(), state.size.numpy()
        gap_c, dv_c = self._corridor_gaps(db, da, pos32, c, sn, vel32, size32, state.valid.numpy())
        gap_r = self._red_light_gaps(state.step, db, da, pos32, state.heading, c, sn, size32)
        speed32 = state.vel.norm(dim=-1).numpy()  # [B, A] float32
        length = state.size[0, :, 0].double().numpy()  # [A]
        # ---- drivers: routes (re-anchored when the agent left its drawn route) ----
        M = len(db)
        q_lane = LANE[db, da]
        R = self.route[db, da]  # [M, K]
        hit = R == q_lane[:, None]
        lost = ~hit.any(1)
        if lost.any():
            self.route[db[lost], da[lost]] = T.default_route[q_lane[lost]]
            self.route_len[db[lost], da[lost]] = T.default_len[q_lane[lost]]
            R = self.route[db, da]
            hit = R == q_lane[:, None]
        p0 = hit.argmax(1)
        n_sfx = self.route_len[db, da] - p0
        k_idx = p0[:, None] + np.arange(MAX_ROUTE)
        sfx = np.where(np.arange(MAX_ROUTE) < n_sfx[:, None],
                       np.take_along_axis(R, np.minimum(k_idx, MAX_ROUTE - 1), 1), -1)  # route from the lane
        on = LALL[db, da] >= 0
        q_s = S[db, da]
        spd32 = speed32[db, da]
        spd = spd32.astype(np.float64)
        gap = gap_c.astype(np.float64)
        dv = dv_c.astype(np.float64)
        # ---- leader along the route (the reference's breadth-first search restricted to the route) ----
        lead_gap, lead_j = self._route_leaders(sfx, n_sfx, db, da, q_s, length, LALL, S, on)
        use = on & (lead_j >= 0) & (lead_gap < gap)
        jj = np.maximum(lead_j, 0)
        dv_l = (spd32 - speed32[db, jj]).astype(np.float64)
        gap = np.where(use, lead_gap, gap)
        dv = np.where(use, dv_l, dv)
        g_r = gap_r.astype(np.float64)
        red = g_r < gap
        gap = np.where(red, g_r, gap)
        dv = np.where(red, spd, dv)
        # ---- desired speed, curve cap, IDM ----
        v_des = self.v_des[da]
        curve = on & (v_des > 0)
        if curve.any():
            ci = np.flatnonzero(curve)
            v_des = v_des.copy()
            v_des[ci] = np.minimum(v_des[ci], self._curve_speed(sfx[ci], n_sfx[ci], q_s[ci], spd[ci],
                                                                self.p["b_comf"][da[ci]]))
        acc = self._idm(spd, v_des, gap, dv, da)
        v_new = np.maximum(0.0, spd + acc * dt)
        # ---- targets ----
        off = np.flatnonzero(~on)
        if len(off):
            hb, ha = torch.from_numpy(db[off]), torch.from_numpy(da[off])
            ch, sh = _scalar_cos_sin(state.heading[hb, ha])
            step = torch.from_numpy(v_new[off] * dt).float()[:, None]
            target_pos[hb, ha] = state.pos[hb, ha] + step * torch.stack([ch, sh], -1)
        onl = np.flatnonzero(on)
        if len(onl):
            xy, hh = T.along_route(sfx[onl], n_sfx[onl], q_s[onl] + v_new[onl] * dt)
            normal = np.stack([-np.sin(hh), np.cos(hh)], -1)
            tgt = xy + normal * LAT[db[onl], da[onl], None] * cfg.lateral_decay
            hb, ha = torch.from_numpy(db[onl]), torch.from_numpy(da[onl])
            target_pos[hb, ha] = torch.from_numpy(tgt).float()
            target_h[hb, ha] = torch.from_numpy(hh).float()

    def _route_leaders(self, sfx, n_sfx, db, da, q_s, length, LALL, S, on):
        """Gap ``[M]`` and agent index ``[M]`` (-1: none) of the nearest agent ahead along each
        driver's route: its own lane ahead of it, then the route's next lanes up to ``lookahead``."""
        T, cfg = self.tables, self.cfg
        M, K = sfx.shape
        B, A = LALL.shape
        best_gap = np.full(M, FAR)
        best_j = np.full(M, -1, np.int64)
        if not on.any():
            return best_gap, best_j
        # agents on the graph grouped by (rollout, lane), ascending agent index within a group
        gb, ga = np.nonzero(LALL >= 0)
        gid = gb * T.num_lanes + LALL[gb, ga]
        order = np.argsort(gid, kind="stable")
        gid_s = gid[order]
        uniq, start, count = np.unique(gid_s, return_index=True, return_counts=True)
        G = int(count.max())
        rank = np.arange(len(gid_s)) - np.repeat(start, count)
        members = np.full((len(uniq) + 1, G), -1, np.int64)  # last row: the empty group
        members[np.repeat(np.arange(len(uniq)), count), rank] = ga[order]
        gmap = np.full(B * T.num_lanes + 1, len(uniq), np.int64)
        gmap[uniq] = np.arange(len(uniq))
        # the route the search walks: from the lane, up to (not including) a lane already seen
        rep = np.zeros((M, K), bool)
        for k in range(1, K):
            rep[:, k] = (sfx[:, k, None] == sfx[:, :k]).any(1)
        n_walk = np.minimum(np.where(rep.any(1), rep.argmax(1), n_sfx), n_sfx)
        lane_len = T.length[np.maximum(sfx, 0)]
        off = np.concatenate([np.zeros((M, 1)), np.cumsum(lane_len, 1)[:, :-1]], 1)  # lane start offsets
        walk = np.arange(K) < n_walk[:, None]
        walk[:, 1:] &= np.cumprod(off[:, 1:] - q_s[:, None] <= cfg.lookahead, 1).astype(bool)
        walk &= on[:, None]
        key = np.where(walk, db[:, None] * T.num_lanes + sfx, B * T.num_lanes)
        cand = members[gmap[key]]  # [M, K, G] agent indices
        ok = cand >= 0
        cj = np.maximum(cand, 0)
        s_c = S[db[:, None, None], cj]
        ahead = s_c + off[..., None]
        q_half = length[da] / 2
        ok[:, 0] &= (cand[:, 0] != da[:, None]) & (ahead[:, 0] > q_s[:, None])
        gaps = ahead - q_s[:, None, None] - q_half[:, None, None] - length[cj] / 2
        gaps = np.where(ok, gaps, np.inf).reshape(M, K * cand.shape[2])
        first = gaps.argmin(1)  # first minimum: earliest lane, then lowest agent index
        g = gaps[np.arange(M), first]
        found = g < FAR
        best_gap[found] = g[found]
        best_j[found] = cj.reshape(M, -1)[np.arange(M), first][found]
        return best_gap, best_j

    def _curve_speed(self, sfx, n_sfx, s, speed, b_comf):
        """The reference's ``_curve_speed`` for arrays of drivers."""
        c = self.cfg
        reach = np.maximum(c.curve_window, speed * c.curve_preview + speed * speed / (2 * b_comf))
        d = np.linspace(0.0, reach, c.curve_samples, axis=-1)  # [M, n]
        M, n = d.shape
        rs, rn = np.repeat(sfx, n, 0), np.repeat(n_sfx, n)
        s_d = (s[:, None] + d).reshape(-1)
        both = self.tables.along_route(np.concatenate([rs, rs]), np.concatenate([rn, rn]),
                                       np.concatenate([s_d, s_d + c.curve_window]), heading_only=True)
        dh = both[M * n :] - both[: M * n]
        kappa = np.abs((dh + np.pi) % (2 * np.pi) - np.pi) / c.curve_window
        v_curve2 = c.max_lateral_accel / np.maximum(kappa, 1e-4)
        best = (v_curve2.reshape(M, n) + 2 * b_comf[:, None] * d).min(1)
        return np.sqrt(best)

    def _idm(self, v, v_des, gap, dv, agents):
        """``idm_acceleration``'s scalar formula for arrays (per-agent type parameters)."""
        p = {k: x[agents] for k, x in self.p.items()}
        s_star = p["s0"] + np.maximum(v * p["time_headway"] + v * dv / (2.0 * p["sqrt_ab"]), 0.0)
        free = 1.0 - (v / np.maximum(v_des, 0.1)) ** p["delta"]
        a = p["a_max"] * (free - (s_star / np.maximum(gap, 0.01)) ** 2)
        return np.minimum(np.maximum(a, -p["b_max"]), p["a_max"])
