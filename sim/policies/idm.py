"""IDM lane following, reactive to every simulated agent (the generator's traffic model): the
per-agent *reference* implementation, registered as ``idm_reference``. ``idm`` is the vectorised
policy in :mod:`drope.sim.policies.idm_vectorised`, tested equal to this one step by step.

Vehicles and cyclists: each step every agent is projected onto the lane graph
(``LaneGraph.project`` with its heading) and follows a route of successor lanes drawn at reset
with the rollout's generator. Its acceleration is ``idm_acceleration`` against the nearest of
(a) the leader along the route (``LaneGraph.leader``), (b) any simulated agent in a corridor
ahead of its box (catches agents off the lane graph or cutting in) and (c) the stop point of a
STOP signal on its path. The target pose one step ahead on the route (lateral offset decaying
by ``lateral_decay`` per step) goes to the dynamics model's tracking controller.

The desired speed is capped where the route ahead curves (``max_lateral_accel``).
Agents that stand still at the start more than ``parked_lateral`` from a lane centre are parked
(desired speed 0). Pedestrians and other types replay the log while it has them, else keep
their velocity.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from drope.data.scene import Scene
from drope.data.types import ObjectType
from drope.sim.events import STOP_STATES
from drope.sim.policies.base import POLICIES
from drope.sim.state import Actions, SimState
from drope.sim.traffic import FAR, PARAMS_BY_TYPE, IDMParams, LaneGraph, idm_acceleration
from drope.geometry import wrap_angle

Tensor = torch.Tensor
_DRIVERS = (int(ObjectType.TYPE_VEHICLE), int(ObjectType.TYPE_CYCLIST))


def cos_sin32(h: Tensor) -> tuple[Tensor, Tensor]:
    """float32 ``cos``/``sin`` of float32 angles, rounded from libm's float64 (numpy's): one definition
    the compiled policy reproduces bit for bit, where torch's float32 kernels round differently
    depending on an element's position in a vectorised loop."""
    d = h.double().numpy()
    return torch.from_numpy(np.cos(d).astype(np.float32)), torch.from_numpy(np.sin(d).astype(np.float32))


def speed32(vel: Tensor) -> np.ndarray:
    """float32 speeds of float32 velocities ``[..., 2]``: libm's float64 ``hypot``, rounded."""
    v = vel.double().numpy()
    return np.hypot(v[..., 0], v[..., 1]).astype(np.float32)


@dataclass(frozen=True)
class IDMPolicyConfig:
    default_speed: float = 11.0  # m/s desired speed where the lane has no speed limit
    parked_lateral: float = 1.5  # m
    parked_speed: float = 0.5  # m/s
    corridor_margin: float = 0.3  # m added to the half widths of the forward corridor
    lookahead: float = 60.0  # m
    lateral_decay: float = 0.8  # lateral offset kept per step while returning to the centre line
    off_lane: float = 4.0  # m: farther from every lane the agent drives straight along its heading
    max_lateral_accel: float = 2.5  # m/s²: desired speed is capped by the curvature of the route ahead
    curve_preview: float = 1.0  # s of travel beyond the braking distance over which curves are looked for
    curve_window: float = 8.0  # m over which a curve's heading change is measured
    curve_samples: int = 6  # preview points


@POLICIES.register("idm_reference")
class IDMReference:
    def __init__(self, dynamics, cfg: IDMPolicyConfig = IDMPolicyConfig()) -> None:
        self.dynamics, self.cfg = dynamics, cfg

    def reset(self, scene: Scene, state: SimState, rng: torch.Generator) -> None:
        self.scene = scene
        self.graph = LaneGraph.from_scene(scene)
        self._pose = torch.cat([scene.agent_pos, scene.agent_heading[..., None], scene.agent_vel], -1)  # [A, T, 5]
        nrng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=rng)))
        B, A = state.batch, state.num_agents
        self.drivers = torch.isin(state.type[0], torch.tensor(_DRIVERS)) & state.valid[0]  # [A]
        pos, h = state.pos[0].double().numpy(), state.heading[0].double().numpy()
        lane, _, lat = self.graph.project(pos, h)
        speed0 = state.speed[0].numpy()
        self.routes: list[list[list[int]]] = [
            [self.graph.random_route(int(lane[a]), nrng) for a in range(A)] for _ in range(B)]
        limit = self.graph.speed_limit[lane]
        v_des = np.where(limit > 0, limit, np.maximum(self.cfg.default_speed, speed0))
        parked = (speed0 < self.cfg.parked_speed) & (np.abs(lat) > self.cfg.parked_lateral)
        self.v_des = np.where(parked, 0.0, v_des)  # [A]
        self.params = [PARAMS_BY_TYPE.get(ObjectType(int(t)), IDMParams()) for t in state.type[0].tolist()]

    # ---- leaders ---------------------------------------------------------------------------------------
    def _corridor_gaps(self, pos: Tensor, heading: Tensor, vel: Tensor, size: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """Bumper gap ``[A]`` to the nearest valid agent in the corridor ahead and the approach rate."""
        c, s = cos_sin32(heading)
        rel = pos[None] - pos[:, None]  # [A, A, 2] j relative to i
        x = rel[..., 0] * c[:, None] + rel[..., 1] * s[:, None]
        y = -rel[..., 0] * s[:, None] + rel[..., 1] * c[:, None]
        half_w = size[:, 1] / 2
        inside = (x > 0) & (y.abs() < half_w[:, None] + half_w[None] + self.cfg.corridor_margin) & valid[None] & valid[:, None]
        inside &= ~torch.eye(len(pos), dtype=torch.bool)
        gap = torch.where(inside, x - (size[:, None, 0] + size[None, :, 0]) / 2, torch.full_like(x, FAR))
        g, j = gap.min(dim=1)
        v_self = (vel * torch.stack([c, s], -1)).sum(-1)
        v_lead = (vel[j] * torch.stack([c, s], -1)).sum(-1)
        return g, v_self - v_lead

    def _red_light_gaps(self, t: int, pos: Tensor, heading: Tensor, size: Tensor) -> Tensor:
        """Gap ``[A]`` to the nearest STOP-signal stop point ahead on an aligned lane (FAR if none)."""
        sc = self.scene
        t = min(t, sc.num_steps - 1)
        on = sc.signal_valid[t] & torch.isin(sc.signal_state[t], torch.tensor(STOP_STATES))
        if not bool(on.any()):
            return torch.full((len(pos),), FAR, dtype=torch.float32)
        stops = sc.signal_stop_point[t, on, :2]  # [S, 2]
        c, s = cos_sin32(heading)
        rel = stops[None] - pos[:, None]  # [A, S, 2]
        x = rel[..., 0] * c[:, None] + rel[..., 1] * s[:, None]
        y = -rel[..., 0] * s[:, None] + rel[..., 1] * c[:, None]
        lane, _, _ = self.graph.project(stops.double().numpy())
        _, lane_h = self.graph.pose_at(lane, self.graph.project(stops.double().numpy())[1])
        aligned = cos_sin32(heading[:, None] - torch.tensor(lane_h, dtype=torch.float32)[None])[0] > 0.7
        # the front bumper must stop before the line; agents already across it keep going
        gap = x - size[:, None, 0] / 2
        ahead = (gap > -0.5) & (y.abs() < 2.0) & aligned
        return torch.where(ahead, gap, torch.full_like(gap, FAR)).min(dim=1).values

    # ---- action ---------------------------------------------------------------------------------------
    def act(self, state: SimState, rng: torch.Generator) -> Actions:
        B, A, dt = state.batch, state.num_agents, self.scene.dt
        t_next = min(state.step + 1, self.scene.num_steps - 1)
        target_pos = state.pos + state.vel * dt  # non-drivers: constant velocity ...
        target_h = state.heading.clone()
        log_next = self._pose[:, t_next]  # [A, 5]
        for b in range(B):
            pos, h, vel, size, valid = state.pos[b], state.heading[b], state.vel[b], state.size[b], state.valid[b]
            drive = (self.drivers & valid).nonzero(as_tuple=True)[0].tolist()
            if not drive:
                continue
            np_pos, np_h = pos.double().numpy(), h.double().numpy()
            lane, s, _ = self.graph.project(np_pos, np_h)
            # offsets in the lane's frame at the projection: beyond a lane's end (the map's edge)
            # the clamped projection's distance is mostly longitudinal, not lateral
            foot, foot_h = self.graph.pose_at(lane, s)
            rel = np_pos - foot
            along = rel[:, 0] * np.cos(foot_h) + rel[:, 1] * np.sin(foot_h)
            lat = -rel[:, 0] * np.sin(foot_h) + rel[:, 1] * np.cos(foot_h)
            s = s + np.maximum(along, 0.0)
            lane_all = np.where(valid.numpy() & (np.abs(lat) < self.cfg.off_lane), lane, -1)
            gap_c, dv_c = self._corridor_gaps(pos, h, vel, size, valid)
            gap_r = self._red_light_gaps(state.step, pos, h, size)
            speed = speed32(vel)
            length = size[:, 0].double().numpy()
            for a in drive:
                route = self._route(b, a, int(lane[a]))
                gap, dv = float(gap_c[a]), float(dv_c[a])
                if lane_all[a] >= 0:
                    g_l, j = self.graph.leader(lane_all, s, length, a, horizon=self.cfg.lookahead, route=route)
                    if j >= 0 and g_l < gap:
                        gap, dv = g_l, float(speed[a] - speed[j])
                if float(gap_r[a]) < gap:
                    gap, dv = float(gap_r[a]), float(speed[a])
                v_des = float(self.v_des[a])
                if lane_all[a] >= 0 and v_des > 0:
                    v_des = min(v_des, self._curve_speed(route, float(s[a]), float(speed[a]), self.params[a].b_comf))
                acc = idm_acceleration(float(speed[a]), v_des, gap, dv, self.params[a])
                v_new = max(0.0, float(speed[a]) + acc * dt)
                if lane_all[a] < 0:  # off the lane graph: straight along the heading
                    target_pos[b, a] = pos[a] + v_new * dt * torch.cat(cos_sin32(h[a : a + 1]))
                    continue
                xy, hh = self.along_route(route, float(s[a]) + v_new * dt)
                normal = np.array([-np.sin(hh), np.cos(hh)])
                target_pos[b, a] = torch.tensor(xy + normal * lat[a] * self.cfg.lateral_decay, dtype=torch.float32)
                target_h[b, a] = float(hh)
        ctrl = self.dynamics.track(state, target_pos, target_h, dt)
        drivers = self.drivers[None] & state.valid  # [B, A]
        replay = ~drivers & self.scene.agent_valid[None, :, t_next] & state.valid
        return Actions(ctrl=ctrl, ctrl_mask=state.valid & ~replay, pose=log_next.expand(B, A, 5), pose_mask=replay,
                       next_valid=state.valid)

    def _curve_speed(self, route: list[int], s: float, speed: float, b_comf: float) -> float:
        """Highest speed now from which every curve ahead (within the braking distance) can be
        reached at ``max_lateral_accel`` while braking at ``b_comf``: min over preview points of
        ``sqrt(v_curve(d)² + 2·b·d)``, curvature from the heading change over ``curve_window``."""
        c = self.cfg
        reach = max(c.curve_window, speed * c.curve_preview + speed * speed / (2 * b_comf))
        best = np.inf
        for d in np.linspace(0.0, reach, c.curve_samples):
            _, h0 = self.along_route(route, s + d)
            _, h1 = self.along_route(route, s + d + c.curve_window)
            kappa = abs(wrap_angle(h1 - h0)) / c.curve_window
            v_curve2 = c.max_lateral_accel / max(kappa, 1e-4)
            best = min(best, v_curve2 + 2 * b_comf * d)
        return float(np.sqrt(best))

    def _route(self, b: int, a: int, lane: int) -> list[int]:
        """The agent's route from its current lane (re-anchored when it left the drawn route)."""
        route = self.routes[b][a]
        if lane in route:
            return route[route.index(lane):]
        new = [lane]
        while self.graph.successors[new[-1]] and len(new) < 6:
            new.append(int(self.graph.successors[new[-1]][0]))
        self.routes[b][a] = new
        return new

    def along_route(self, route: list[int], s: float) -> tuple[np.ndarray, float]:
        """Pose at arc length ``s`` along the route; past the route's end (the map's edge) the last
        lane is extended straight, so agents drive on instead of braking at the end of the data."""
        for k, lane in enumerate(route):
            length = float(self.graph.length[lane])
            if s <= length or k == len(route) - 1:
                xy, h = self.graph.pose_at(lane, min(s, length))
                beyond = max(0.0, s - length)
                return xy[0] + beyond * np.array([np.cos(h[0]), np.sin(h[0])]), float(h[0])
            s -= length
        raise AssertionError("unreachable: the last route lane always returns")
