"""Microscopic traffic on a :class:`RoadNetwork`: IDM car following along lane routes (leaders
found along the lane sequence, through intersections), signals and all-way stops, a reservation
of intersection connectors and crosswalks (conflicting movements never share the box), MOBIL
lane changes, cyclists in the right lane, pedestrians on sidewalks crossing at crosswalks.

The output is a dense log ``[N, T]`` of poses and validity in the network's local frame.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np

from drope.data.types import ObjectType, SignalState
from drope.sim.generate.roads import LANE_WIDTH, RoadNetwork, interp_scalar
from drope.sim.traffic.idm import PARAMS_BY_TYPE, IDMParams, idm_acceleration, mobil_gain

FAR = 1e3
LC_LENGTH = 30.0  # m travelled during a lane change's lateral move (so stopped cars never slide sideways)


@dataclass
class TrafficConfig:
    vehicle_rate: float = 0.12  # spawns per entry lane per second
    initial_density: float = 0.035  # vehicles per metre of entry lane at start
    cyclist_share: float = 0.08
    pedestrian_rate: float = 0.05  # spawns per sidewalk path per second
    initial_pedestrians: int = 4
    green_s: tuple[float, float] = (6.0, 10.0)
    yellow_s: float = 3.0
    all_red_s: float = 1.5
    warmup_steps: int = 40
    max_agents: int = 128


@dataclass
class Agent:
    id: int
    type: int
    size: tuple[float, float, float]
    v_des: float
    params: IDMParams
    v: float
    s: float
    route: list[int] = field(default_factory=list)  # lane ids (vehicles)
    k: int = 0  # index of the current lane in route
    path: int = -1  # sidewalk path index (pedestrians)
    lat: float = 0.0  # lateral offset (lane change in progress), m
    lc_from: int | None = None
    lc_t: float = 0.0  # distance travelled since the lane change started, m
    lc_lat0: float = 0.0  # lateral offset at the start of the lane change, m
    next_lc_check: float = 0.0
    reserved: object = None  # connector id or ("xw", k)
    stopped_at_sign: bool = False
    alive: bool = True


class TrafficSim:
    def __init__(self, net: RoadNetwork, rng: np.random.Generator, cfg: TrafficConfig, dt: float = 0.1) -> None:
        self.net, self.rng, self.cfg, self.dt = net, rng, cfg, dt
        self.agents: list[Agent] = []
        self.next_id = 1
        self.t = 0.0
        self.reservations: dict[object, set[int]] = {}
        self.phase_offset = rng.uniform(0, 100.0)
        self.phase_dur = [rng.uniform(*cfg.green_s) for _ in net.signal_groups]
        self.paths = [(_arc(p), p) for p in net.sidewalk_paths]
        # (s, x, y, unused, segment heading) python lists: fast scalar poses on sidewalk paths
        self._path_tables = []
        for s_arr, pts in self.paths:
            d = np.diff(pts, axis=0)
            self._path_tables.append((s_arr.tolist(), pts[:, 0].tolist(), pts[:, 1].tolist(), [0.0] * len(pts),
                                      np.arctan2(d[:, 1], d[:, 0]).tolist()))
        self.path_crossings = [self._crossings(p) for p in net.sidewalk_paths]
        self.log: dict[int, dict[int, tuple]] = {}  # step -> id -> (x, y, h, v)
        self._occupancy: dict[int, list[Agent]] = {}

    # ---- routes --------------------------------------------------------------------------------
    def _random_route(self, start: int) -> list[int]:
        route, lane = [start], start
        while self.net.lanes[lane].successors and len(route) < 6:
            lane = int(self.rng.choice(self.net.lanes[lane].successors))
            route.append(lane)
        return route

    def _crossings(self, path: np.ndarray) -> list[tuple[int, float, float]]:
        s = _arc(path)
        out = []
        for k, cw in enumerate(self.net.crosswalks):
            sa = s[int(np.argmin(np.linalg.norm(path - cw.ends[0], axis=-1)))]
            sb = s[int(np.argmin(np.linalg.norm(path - cw.ends[1], axis=-1)))]
            if min(np.linalg.norm(path - cw.ends[0], axis=-1).min(), np.linalg.norm(path - cw.ends[1], axis=-1).min()) < 1.0:
                out.append((k, min(sa, sb) - 1.0, max(sa, sb) + 1.0))
        return out

    # ---- spawning ------------------------------------------------------------------------------
    def _new_vehicle(self, lane: int, s: float, v: float | None = None) -> Agent | None:
        cyc = self.rng.random() < self.cfg.cyclist_share
        ln = self.net.lanes[lane]
        if cyc and ln.right is not None:
            return None  # cyclists keep to the rightmost lane
        if cyc:
            typ, size, v_des = ObjectType.TYPE_CYCLIST, (1.8, 0.7, 1.7), self.rng.uniform(4.0, 7.0)
        else:
            typ = ObjectType.TYPE_VEHICLE
            big = self.rng.random() < 0.1
            size = (self.rng.uniform(8.0, 11.0), 2.5, 3.2) if big else (
                self.rng.uniform(4.2, 5.2), self.rng.uniform(1.8, 2.05), self.rng.uniform(1.45, 1.9))
            v_des = ln.speed_limit_mph * 0.44704 * self.rng.uniform(0.85, 1.1)
        route = self._random_route(lane)
        a = Agent(self.next_id, int(typ), size, v_des, PARAMS_BY_TYPE[typ], v=v_des if v is None else v, s=s,
                  route=route, next_lc_check=self.t + self.rng.uniform(0, 1))
        return a

    def _gap_free(self, lane: int, s: float, length: float, need: float) -> bool:
        for b in self.agents:
            if b.alive and b.path < 0 and lane in self._lanes_of(b):
                if abs(self._s_on(b, lane) - s) < need + (length + b.size[0]) / 2:
                    return False
        return True

    def populate(self) -> None:
        for lane in self.net.entry_lanes():
            ln = self.net.lanes[lane]
            s = ln.length - self.rng.uniform(8, 20)
            while s > 5 and len(self.agents) < self.cfg.max_agents * 0.6:
                a = self._new_vehicle(lane, s, v=0.0)
                if a is not None and self._gap_free(lane, s, a.size[0], 2.5):
                    a.v = self.rng.uniform(0.3, 1.0) * a.v_des
                    self.agents.append(a)
                    self.next_id += 1
                s -= self.rng.exponential(1 / self.cfg.initial_density) + 12.0
        for _ in range(self.cfg.initial_pedestrians):
            self._spawn_pedestrian(random_position=True)

    def _spawn_pedestrian(self, random_position: bool = False) -> None:
        if not self.paths:
            return
        p = int(self.rng.integers(len(self.paths)))
        s_arr, _ = self.paths[p]
        s = float(self.rng.uniform(0, s_arr[-1] * 0.5)) if random_position else 0.0
        for b in self.agents:
            if b.alive and b.path == p and abs(b.s - s) < 2.5:
                return
        if any(sa - 1.0 < s < sb for _, sa, sb in self.path_crossings[p]):
            return
        v = self.rng.uniform(1.0, 1.6)
        self.agents.append(Agent(self.next_id, int(ObjectType.TYPE_PEDESTRIAN),
                                 (self.rng.uniform(0.4, 0.7), self.rng.uniform(0.4, 0.7), self.rng.uniform(1.5, 1.9)),
                                 v, PARAMS_BY_TYPE[ObjectType.TYPE_PEDESTRIAN], v=v, s=s, path=p))
        self.next_id += 1

    def _spawn(self) -> None:
        if len([a for a in self.agents if a.alive]) >= self.cfg.max_agents:
            return
        for lane in self.net.entry_lanes():
            if self.rng.random() < self.cfg.vehicle_rate * self.dt:
                a = self._new_vehicle(lane, 0.0)
                if a is not None and self._gap_free(lane, 0.0, a.size[0], a.params.s0 + a.v * a.params.time_headway):
                    self.agents.append(a)
                    self.next_id += 1
        for _ in self.paths:
            if self.rng.random() < self.cfg.pedestrian_rate * self.dt:
                self._spawn_pedestrian()

    # ---- signals ---------------------------------------------------------------------------------
    def signal_state(self, connector: int) -> str:
        """'go' | 'caution' | 'stop' for a connector's movement now (unsignalised: 'go')."""
        if not self.net.signalized:
            return "go"
        cycle = [d + self.cfg.yellow_s + self.cfg.all_red_s for d in self.phase_dur]
        t = (self.t + self.phase_offset) % sum(cycle)
        for group, d, c in zip(self.net.signal_groups, self.phase_dur, cycle):
            if t < c:
                if connector in group:
                    return "go" if t < d else ("caution" if t < d + self.cfg.yellow_s else "stop")
                return "stop"
            t -= c
        return "stop"

    def lane_signal_states(self) -> list[tuple[int, int, np.ndarray]]:
        """(inbound lane id, SignalState, stop point) for every signalised lane now."""
        out = []
        rank = {"go": 2, "caution": 1, "stop": 0}
        for lane in self.net.lanes.values():
            if not lane.inbound or not self.net.signalized:
                continue
            best = max((self.signal_state(c) for c in lane.successors), key=rank.get, default="stop")
            state = {"go": SignalState.LANE_STATE_GO, "caution": SignalState.LANE_STATE_CAUTION,
                     "stop": SignalState.LANE_STATE_STOP}[best]
            out.append((lane.id, int(state), lane.points[-1]))
        return out

    # ---- geometry helpers ------------------------------------------------------------------------
    def _lanes_of(self, a: Agent) -> list[int]:
        cur = a.route[a.k]
        return [cur, a.lc_from] if a.lc_from is not None else [cur]

    def _s_on(self, a: Agent, lane: int) -> float:
        return a.s  # parallel lanes share stations closely enough for gap checks

    def pose(self, a: Agent) -> tuple[float, float, float]:
        if a.path >= 0:
            tab = self._path_tables[a.path]
            x, y, _ = interp_scalar(tab[:4], a.s)
            # heading of the segment the pedestrian is on (paths have sharp corners; no blending)
            i = min(max(bisect_left(tab[0], a.s), 1), len(tab[0]) - 1)
            return x, y, tab[4][i - 1]
        ln = self.net.lanes[a.route[a.k]]
        x, y, h = ln.pose_scalar(a.s)
        xy = (x, y)
        if a.lat:
            xy = (x - a.lat * math.sin(h), y + a.lat * math.cos(h))
            if a.lc_from is not None:  # heading follows the smooth (cosine) lateral profile
                slope = -a.lc_lat0 * math.pi / (2 * LC_LENGTH) * math.sin(math.pi * a.lc_t / LC_LENGTH)  # dlat/ds
                h = h + math.atan(slope)
        return float(xy[0]), float(xy[1]), float(h)

    def _leader(self, a: Agent, lanes_ahead: list[int] | None = None, s0: float | None = None) -> tuple[float, float]:
        """(bumper gap, leader speed) along the route, looking ≤ 80 m ahead."""
        route = lanes_ahead if lanes_ahead is not None else a.route[a.k:]
        s_start = a.s if s0 is None else s0
        best_gap, best_v, offset = FAR, a.v_des, 0.0
        for i, lane in enumerate(route):
            for b in self._occupancy.get(lane, ()):
                if b is a or not b.alive:
                    continue
                pos = offset + self._s_on(b, lane)
                if i == 0 and pos <= s_start:
                    continue
                gap = pos - s_start - (a.size[0] + b.size[0]) / 2
                if gap < best_gap:
                    best_gap, best_v = gap, b.v
            if best_gap < FAR:
                break
            offset += self.net.lanes[lane].length
            if offset - s_start > 80:
                break
        return best_gap, best_v

    # ---- reservations --------------------------------------------------------------------------
    def _held_by_others(self, resource, me: int) -> bool:
        return bool(self.reservations.get(resource, set()) - {me})

    def _vehicle_may_take(self, conn: int, me: int) -> bool:
        """A connector is free when nobody holds it, a conflicting connector, or a crosswalk it crosses."""
        return not self._held_by_others(conn, me) and not any(
            self._held_by_others(r, me) for r in self.net.conflicts.get(conn, ()))

    def _ped_may_take(self, xw: tuple, me: int) -> bool:
        """Pedestrians share a crosswalk; they wait while a vehicle holds a connector crossing it."""
        return not any(xw in self.net.conflicts.get(c, ()) and (h - {me})
                       for c, h in self.reservations.items() if not isinstance(c, tuple))

    def _reserve(self, a: Agent, resource) -> None:
        self.reservations.setdefault(resource, set()).add(a.id)
        a.reserved = resource

    def _release(self, a: Agent) -> None:
        if a.reserved is not None:
            self.reservations.get(a.reserved, set()).discard(a.id)
            a.reserved = None

    # ---- step --------------------------------------------------------------------------------------
    def _vehicle_accel(self, a: Agent) -> float:
        gap, v_lead = self._leader(a)
        if a.lc_from is not None:  # mid lane change: also keep clear of the old lane's leader
            g2, v2 = self._leader(a, [a.lc_from])
            if g2 < gap:
                gap, v_lead = g2, v2
        lane = self.net.lanes[a.route[a.k]]
        nxt = a.route[a.k + 1] if a.k + 1 < len(a.route) else None
        d_stop = lane.length - a.s - a.size[0] / 2
        # slow down for curves: the current lane's, and the next one's when it is near
        v_des = min(a.v_des, lane.max_speed)
        if nxt is not None and d_stop < 25.0:
            v_des = min(v_des, self.net.lanes[nxt].max_speed + d_stop * 0.25)
        acc = float(idm_acceleration(a.v, v_des, gap, a.v - v_lead, a.params))
        must_stop = False
        if nxt is not None and self.net.lanes[nxt].connector and a.reserved != nxt:
            brake = a.v * a.v / (2 * a.params.b_comf)
            if d_stop < brake + 8.0:
                state = self.signal_state(nxt)
                sign_ok = self.net.signalized or a.stopped_at_sign
                if not self.net.signalized and d_stop < 1.5 and a.v < 0.3:
                    a.stopped_at_sign = True
                    sign_ok = True
                allowed = (state == "go" or (state == "caution" and d_stop < a.v * a.v / (2 * a.params.b_max)))
                if allowed and sign_ok and self._vehicle_may_take(nxt, a.id):
                    self._reserve(a, nxt)
                else:
                    must_stop = True
        elif nxt is None and not self._exits_map(lane):
            must_stop = True  # dead end (dropped lane): stop before its end
        if must_stop:
            acc = min(acc, float(idm_acceleration(a.v, a.v_des, max(d_stop - 0.5, 0.01), a.v, a.params)))
        return acc

    def _exits_map(self, lane) -> bool:
        return np.linalg.norm(lane.points[-1]) > self.net.extent * 0.8

    def _try_lane_change(self, a: Agent) -> None:
        if (self.t < a.next_lc_check or a.lc_from is not None or a.reserved is not None
                or a.type != ObjectType.TYPE_VEHICLE):
            return
        a.next_lc_check = self.t + 1.0
        lane = self.net.lanes[a.route[a.k]]
        forced = not lane.successors and not self._exits_map(lane) and lane.length - a.s < 90
        if a.v < 3.0 and not forced:
            return
        gap, vl = self._leader(a)
        a_old = float(idm_acceleration(a.v, a.v_des, gap, a.v - vl, a.params))
        for target, side in ((lane.left, +1), (lane.right, -1)):
            if target is None:
                continue
            g_new, v_new = self._leader(a, [target])
            a_new = float(idm_acceleration(a.v, a.v_des, g_new, a.v - v_new, a.params))
            # new follower: nearest agent behind on the target lane
            fol = [b for b in self.agents if b.alive and b is not a and b.path < 0 and target in self._lanes_of(b)
                   and b.s < a.s]
            if fol:
                f = max(fol, key=lambda b: b.s)
                fg = a.s - f.s - (a.size[0] + f.size[0]) / 2
                if fg < f.params.s0 + 1.0:
                    continue
                fg_old, fv_old = self._leader(f)
                af_old = float(idm_acceleration(f.v, f.v_des, fg_old, f.v - fv_old, f.params))
                af_new = float(idm_acceleration(f.v, f.v_des, fg, f.v - a.v, f.params))
            else:
                af_old = af_new = 0.0
            if g_new < a.params.s0 + 1.0:
                continue
            gain, safe = mobil_gain(a_old, a_new, af_old, af_new, 0.0, 0.0, a.params)
            if safe and (gain > 0 or forced):
                a.lc_from = a.route[a.k]
                a.route = [target] + self._random_route(target)[1:]
                a.k = 0
                a.lat = a.lc_lat0 = -side * LANE_WIDTH
                a.lc_t = 0.0
                self._index_lanes()
                return

    def _index_lanes(self) -> None:
        self._occupancy: dict[int, list[Agent]] = {}
        for b in self.agents:
            if b.alive and b.path < 0:
                for lane in self._lanes_of(b):
                    self._occupancy.setdefault(lane, []).append(b)

    def step(self) -> None:
        dt = self.dt
        accs = {}
        self._index_lanes()
        order = sorted((a for a in self.agents if a.alive), key=lambda a: -a.s)
        for a in order:
            if a.path >= 0:
                accs[a.id] = self._ped_accel(a)
            else:
                self._try_lane_change(a)
                accs[a.id] = self._vehicle_accel(a)
        for a in order:
            acc = accs[a.id]
            a.v = max(0.0, a.v + acc * dt)
            a.s += a.v * dt
            if a.path >= 0:
                s_arr, _ = self.paths[a.path]
                for k, sa, sb in self.path_crossings[a.path]:
                    if a.reserved == ("xw", k) and a.s > sb + 0.3:
                        self._release(a)
                if a.s >= s_arr[-1]:
                    a.alive = False
                    self._release(a)
                continue
            if a.lc_from is not None:
                a.lc_t += a.v * dt
                if a.lc_t >= LC_LENGTH:
                    a.lat, a.lc_from = 0.0, None
                else:
                    a.lat = a.lc_lat0 * (1 + math.cos(math.pi * a.lc_t / LC_LENGTH)) / 2
            lane = self.net.lanes[a.route[a.k]]
            while a.s > lane.length:
                if a.k + 1 >= len(a.route):
                    a.alive = False
                    self._release(a)
                    break
                a.s -= lane.length
                a.k += 1
                a.stopped_at_sign = False
                lane = self.net.lanes[a.route[a.k]]
            if a.alive and a.reserved is not None and not isinstance(a.reserved, tuple):
                if a.reserved not in a.route:
                    self._release(a)
                elif a.route.index(a.reserved) < a.k and a.s > a.size[0] / 2 + 1.0:
                    self._release(a)  # the rear has cleared the connector
        self.t += dt
        self._spawn()

    def _ped_accel(self, a: Agent) -> float:
        s_arr, _ = self.paths[a.path]
        gap, v_lead = FAR, a.v_des
        for b in self.agents:
            if b is not a and b.alive and b.path == a.path and b.s > a.s:
                g = b.s - a.s - (a.size[0] + b.size[0]) / 2
                if g < gap:
                    gap, v_lead = g, b.v
        acc = float(idm_acceleration(a.v, a.v_des, gap, a.v - v_lead, a.params))
        for k, sa, sb in self.path_crossings[a.path]:
            if sa - 3.0 < a.s < sa + 0.1 and a.reserved != ("xw", k):
                if self._ped_may_take(("xw", k), a.id) and a.reserved is None:
                    self._reserve(a, ("xw", k))
                else:
                    acc = min(acc, float(idm_acceleration(a.v, a.v_des, max(sa - a.s, 0.01), a.v, a.params)))
        return acc

    # ---- recording ---------------------------------------------------------------------------------
    def record(self, step: int) -> None:
        self.log[step] = {a.id: (*self.pose(a), a.v) for a in self.agents if a.alive}


def _arc(p: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=-1))])
