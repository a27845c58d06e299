"""IDM lane following for all rollouts × agents at once (the ``idm`` policy).

Same model as the per-agent reference :class:`~drope.sim.policies.idm.IDMReference`
(``idm_reference``; read its docstring for the behaviour): lane projection, route bookkeeping
(re-anchoring), leader search along the route through successor lanes, the corridor and
red-light gaps, the curve speed cap, IDM and the target pose along the route. The per-agent
loops are compiled (numba, :mod:`drope.sim.policies.idm_kernels`); this module holds the
per-scene tables (lane arrays, midpoint grid, arc-length bins, default routes, red-light stop
lanes; built once per scene and reused over rollouts and resets) and the projection caches
(:class:`Projection`). Every quantity uses the reference's formula in the reference's dtype, so
the trajectories are the reference's bits; ``tests/test_sim_idm_vectorised.py`` checks this step
by step.

Deliberate differences: none in behaviour. Implementation notes the equality relies on:

* float32 ``cos``/``sin`` and speeds are defined (in the reference too) as libm's float64 values
  rounded to float32 (``cos_sin32``, ``speed32``), which compiled code reproduces; torch's float32
  kernels round differently depending on an element's place in a vectorised loop;
* route draws at reset consume the rollout generator in the reference's order;
* the lane projection reuses cached answers only where bounds prove them the reference's
  (:mod:`~drope.sim.policies.idm_kernels`); an exact tie of both cost and midpoint distance
  between two different segments could resolve differently from the KD tree (not seen).
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
from drope.sim.policies import idm_kernels as kernels
from drope.sim.traffic import FAR, PARAMS_BY_TYPE, IDMParams, LaneGraph

Tensor = torch.Tensor
MAX_ROUTE = 6  # lanes per route (LaneGraph.random_route's and the reference's re-anchoring limit)
GRID_CELL = 4.0  # m, the projection's midpoint grid (kernels.project's disk proof)
_c = np.ascontiguousarray  # the kernels are compiled for C-contiguous arrays only


class SceneTables:
    """Per-scene arrays of the lane graph the kernels index (built once per scene)."""

    def __init__(self, scene: Scene) -> None:
        g = self.graph = LaneGraph.from_scene(scene)
        self.scene = scene
        L = g.num_lanes
        self.num_lanes = L
        self.length = g.length
        seg = g.points[np.minimum(np.arange(len(g.points)) + 1, len(g.points) - 1)] - g.points
        # heading of the segment from each point to the next (garbage at a lane's last point), numpy's
        # arctan2 as the reference's (libm's rounds differently)
        self.pt_h = np.arctan2(seg[:, 1], seg[:, 0])
        # the reference's re-anchored route: the lane, then always the first successor
        self.default_route = np.full((L, MAX_ROUTE), -1, np.int64)
        self.default_len = np.zeros(L, np.int64)
        for lane in range(L):
            r = [lane]
            while g.successors[r[-1]] and len(r) < MAX_ROUTE:
                r.append(int(g.successors[r[-1]][0]))
            self.default_route[lane, : len(r)] = r
            self.default_len[lane] = len(r)
        self._stops: list | None = None  # per step, built on first use
        seg_lane, starts, self.tree = g._segments()
        self.seg_lane, self.seg_start = seg_lane.astype(np.int64), starts.astype(np.int64)
        self.mid = np.ascontiguousarray(self.tree.data)
        self.half = np.linalg.norm(g.points[starts + 1] - g.points[starts], axis=-1) / 2  # [G] half segment lengths
        self.half_max = float(self.half.max(initial=0.0))
        self.k = min(g.candidates, len(starts))
        self.grid, self.cells, self.cell_seg, self.ne_cells, self.ne_box = kernels.build_grid(self.mid, GRID_CELL)
        self.bin_off, self.bin_first = kernels.build_arc_bins(g.s, g.offsets)  # O(1) segment lookups by arc length

    def geometry(self) -> tuple:
        """(points, s, offsets, arc-length bins, segment headings): the lane arrays every pose kernel takes."""
        g = self.graph
        return g.points, g.s, g.offsets, self.bin_off, self.bin_first, self.pt_h

    def pose_at(self, lane: np.ndarray, s: np.ndarray):
        """``LaneGraph.pose_at`` for arrays (same segment choice and arithmetic)."""
        return kernels.poses_at(*self.geometry(), np.asarray(lane, np.int64), np.asarray(s, np.float64))

    def along_route(self, route: np.ndarray, n: np.ndarray, s: np.ndarray):
        """Pose at arc length ``s [M]`` along routes ``route [M, K]`` (``n [M]`` lanes each), past
        the route's end extended straight (the reference's ``along_route``)."""
        return kernels.poses_along_routes(*self.geometry(), self.length, np.asarray(route, np.int64),
                                          np.asarray(n, np.int64), np.asarray(s, np.float64))

    def stops(self, t: int):
        """(stop points [S, 2], stop lane headings [S]; float32 numpy) of STOP signals at step ``t``, or None."""
        if self._stops is None:  # every step at once: one projection call for the whole scene
            sc = self.scene
            on = sc.signal_valid & torch.isin(sc.signal_state, torch.tensor(STOP_STATES))  # [T, N]
            steps, _ = on.nonzero(as_tuple=True)
            points = sc.signal_stop_point[..., :2][on]  # [M, 2] in (step, signal) order
            lane_h = np.zeros(0)
            if len(points):  # LaneGraph.project and pose_at answer each row on its own
                lane, s, _ = self.graph.project(points.double().numpy())
                _, lane_h = self.graph.pose_at(lane, s)
            lane_h, points = np.asarray(lane_h, np.float32), points.numpy()
            counts = torch.bincount(steps, minlength=sc.num_steps).tolist()
            first = np.concatenate([[0], np.cumsum(counts)]).tolist()
            self._stops = [(_c(points[first[k] : first[k + 1]]), _c(lane_h[first[k] : first[k + 1]])) if counts[k]
                           else None for k in range(sc.num_steps)]
        return self._stops[t]


class Projection:
    """``LaneGraph.project(xy, heading)`` (lane, s) of every agent of B rollouts, step after step,
    with the per-agent caches :func:`kernels.project` proves answers from (module docstring of
    :mod:`~drope.sim.policies.idm_kernels`); agents without a proof get their nearest midpoints
    from the grid (:func:`kernels.project_nearest`) or, at a tie for the 64th, scipy's KD tree."""

    def __init__(self, tables: SceneTables, B: int, A: int) -> None:
        T = self.tables = tables
        C = min(kernels.CACHE_K, len(T.seg_start))
        # KD cache: nearest midpoints at ``centre``, their distances, the next one's, the winner's column
        self.cand, self.cdist, self.beyond = np.zeros((B, A, C), np.int64), np.zeros((B, A, C)), np.zeros((B, A))
        self.centre, self.last_col, self.have = np.zeros((B, A, 2)), np.zeros((B, A), np.int64), np.zeros((B, A), bool)
        # the last winner and the pose it was found for (NaN: none, never equal to a pose)
        self.last_seg, self.last_pose = np.full((B, A), -1, np.int64), np.full((B, A, 3), np.nan, np.float32)
        # far disk cache: every segment within ``disk_r`` of ``disk_centre``
        self.disk, self.disk_n = np.zeros((B, A, kernels.DISK_K), np.int64), np.zeros((B, A), np.int64)
        self.disk_centre, self.disk_r = np.zeros((B, A, 2)), np.full((B, A), -1.0)
        self.prefer_disk = np.zeros((B, A), bool)
        self.lane, self.s = np.zeros((B, A), np.int64), np.zeros((B, A))
        self.kd_queries = 0  # agents projected through scipy's KD tree (diagnostics)
        g = T.graph
        head = (g.points, g.s, T.pt_h, T.seg_start, T.seg_lane)
        grid = (T.mid, T.grid, T.cells, T.cell_seg, T.ne_cells, T.ne_box)
        self._fresh = (self.cand, self.cdist, self.beyond, self.centre, self.last_col, self.last_seg, self.have,
                       self.lane, self.s)
        self._project = ((*head, T.mid, T.half, T.half_max, *grid[1:]),
                         (self.cand, self.cdist, self.beyond, self.centre, self.last_col, self.last_seg, self.last_pose,
                          self.have, self.disk, self.disk_n, self.disk_centre, self.disk_r, self.prefer_disk, self.lane,
                          self.s))
        self._nearest, self._head = (*head, *grid), head

    def seed(self, lane: np.ndarray, s: np.ndarray) -> None:
        """Start every rollout's disk proof from the segment at (``lane [A]``, ``s [A]``) (the reset
        pose's projection) instead of a nearest-midpoint search: any segment's cost bounds the
        answer's, so a stale or approximate seed costs speed, never correctness."""
        g = self.tables.graph
        lane = np.asarray(lane, np.int64)
        first, last = g.offsets[lane], g.offsets[lane + 1] - 2  # the lane's first and last segment's start
        i = np.array([np.searchsorted(g.s[f : l + 2], x, side="right") - 1 for f, l, x in zip(first, last, s)],
                     np.int64)
        self.last_seg[:] = (np.clip(first + i, first, last) - lane)[None]  # segment index = start point - lane

    def __call__(self, pos: np.ndarray, heading: np.ndarray, valid: np.ndarray, drivers: np.ndarray):
        """(lane [B, A], s [B, A]) for the valid agents of the rollouts with a driver (``pos [B, A, 2]``,
        ``heading [B, A]`` float32; the returned arrays are this object's, rewritten each call)."""
        redo = kernels.project(*self._project[0], pos, heading, valid, drivers, *self._project[1])
        if len(redo):
            redo = kernels.project_nearest(*self._nearest, pos, heading, redo, *self._fresh)
        if len(redo):
            self.kd_queries += len(redo)
            q = min(self.cand.shape[2] + 1, len(self.tables.seg_start))
            dist, cand = self.tables.tree.query(pos.reshape(-1, 2)[redo].astype(np.float64), k=q)
            kernels.project_fresh(*self._head, pos, heading, redo, np.asarray(cand, np.int64).reshape(len(redo), q),
                                  np.asarray(dist, np.float64).reshape(len(redo), q), *self._fresh)
        return self.lane, self.s


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
        T, g, c = self.tables, self.tables.graph, self.cfg
        self.scene, self._num_steps = scene, scene.num_steps
        self._pose = torch.cat([scene.agent_pos, scene.agent_heading[..., None], scene.agent_vel], -1)
        nrng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=rng)))
        B, A = state.batch, state.num_agents
        self.drivers = torch.isin(state.type[0], torch.tensor(_DRIVERS)) & state.valid[0]
        self._drivers = self.drivers.numpy().copy()
        self._log_valid = scene.agent_valid.numpy()  # [A, T]
        pos, h = state.pos[0].double().numpy(), state.heading[0].double().numpy()
        lane, s0, lat = g.project(pos, h)
        speed0 = state.speed[0].numpy()
        self.route = np.full((B, A, MAX_ROUTE), -1, np.int64)
        self.route_len = np.zeros((B, A), np.int64)
        for b in range(B):  # the reference's draw order: rollout-major, every agent
            for a in range(A):
                r = g.random_route(int(lane[a]), nrng)
                self.route[b, a, : len(r)] = r
                self.route_len[b, a] = len(r)
        limit = g.speed_limit[lane]
        v_des = np.where(limit > 0, limit, np.maximum(c.default_speed, speed0))
        parked = (speed0 < c.parked_speed) & (np.abs(lat) > c.parked_lateral)
        self.v_des = np.where(parked, 0.0, v_des).astype(np.float64)
        params = [PARAMS_BY_TYPE.get(ObjectType(int(t)), IDMParams()) for t in state.type[0].tolist()]
        # sqrt(a·b) as the reference computes it (``** 0.5``, not sqrt)
        self.params = np.array([[p.a_max, p.b_comf, p.b_max, p.s0, p.time_headway, p.delta, (p.a_max * p.b_comf) ** 0.5]
                                for p in params], np.float64).reshape(A, 7)
        cfg = np.zeros(kernels.NUM_CFG)
        cfg[[kernels.C_OFF_LANE, kernels.C_LOOKAHEAD, kernels.C_DECAY, kernels.C_MAX_LAT, kernels.C_PREVIEW,
             kernels.C_WINDOW, kernels.C_SAMPLES, kernels.C_CORRIDOR, kernels.C_DT, kernels.C_TWO, kernels.C_FAR]] = (
            c.off_lane, c.lookahead, c.lateral_decay, c.max_lateral_accel, c.curve_preview, c.curve_window,
            c.curve_samples, c.corridor_margin, scene.dt, 2.0, FAR)
        self._cfg = cfg
        self.projection = Projection(T, B, A)
        self.projection.seed(lane, s0)
        # the drive kernel's arguments that stay fixed over the rollout (around the per-step state)
        self._drive_args = ((*T.geometry(), T.length, T.default_route, T.default_len, cfg),
                            (self.route, self.route_len, self.v_des, self.params))
        self._no_stops = np.zeros((0, 2), np.float32), np.zeros(0, np.float32)

    # ---- action -----------------------------------------------------------------------------------------
    def act(self, state: SimState, rng: torch.Generator) -> Actions:
        B, A = state.batch, state.num_agents
        t_next = min(state.step + 1, self._num_steps - 1)
        pos, heading, valid = _c(state.pos.numpy()), _c(state.heading.numpy()), _c(state.valid.numpy())
        drive = self._drivers[None] & valid  # [B, A]
        # targets: constant velocity (every agent), then the drivers' IDM targets, in one kernel call
        target_pos, target_h = np.empty((B, A, 2), np.float32), np.empty((B, A), np.float32)
        if drive.any():
            lane, s = self.projection(pos, heading, valid, drive)
            st = self.tables.stops(min(state.step, self._num_steps - 1))
            stops, stop_h = self._no_stops if st is None else st
        else:
            lane, s, (stops, stop_h) = self.projection.lane, self.projection.s, self._no_stops
        kernels.drive(*self._drive_args[0], pos, heading, _c(state.vel.numpy()), _c(state.size.numpy()), valid, drive,
                      lane, s, stops, stop_h, *self._drive_args[1], target_pos, target_h)
        ctrl = self.dynamics.track(state, torch.from_numpy(target_pos), torch.from_numpy(target_h), self.scene.dt)
        replay = ~drive & self._log_valid[None, :, t_next] & valid
        return Actions(ctrl=ctrl, ctrl_mask=torch.from_numpy(valid & ~replay),
                       pose=self._pose[:, t_next].expand(B, A, 5), pose_mask=torch.from_numpy(replay),
                       next_valid=state.valid)
