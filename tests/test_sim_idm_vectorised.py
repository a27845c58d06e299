"""The vectorised IDM (``idm``) against the per-agent reference (``idm_reference``).

Equality is checked step by step: both policies act on the same (reference-driven) state, so a
difference shows at the step and agent where it starts, and the route bookkeeping (re-anchoring)
must match too. There are no deliberate behaviour differences to test.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from drope.sim.dynamics import build_dynamics
from drope.sim.policies import POLICIES, IDMPolicy, IDMReference, VectorisedIDM, controlled_mask
from drope.sim.policies.idm_vectorised import Projection, SceneTables
from drope.sim.rollout import run_rollouts
from drope.sim.state import SimState, step


@pytest.fixture(scope="module")
def womd_scene(womd_path):
    from drope.data.womd import read_scenarios

    return next(read_scenarios(womd_path))


def lockstep(scene, rollouts: int, steps: int, seed: int = 3):
    """Run the reference; at every step the vectorised policy acts on the same state. Returns the
    largest control difference, the reference state trajectory and both policies."""
    dyn = build_dynamics("bicycle")
    ref, vec = IDMReference(dyn), VectorisedIDM(dyn)
    state = SimState.from_scene(scene, scene.current_index, batch=rollouts)
    g_ref, g_vec = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    ref.reset(scene, state, g_ref)
    vec.reset(scene, state, g_vec)
    worst = 0.0
    for _ in range(steps):
        a, b = ref.act(state, g_ref), vec.act(state, g_vec)
        worst = max(worst, float((a.ctrl - b.ctrl).abs().max()))
        assert torch.equal(a.ctrl_mask, b.ctrl_mask) and torch.equal(a.pose_mask, b.pose_mask)
        state = step(state, a, dyn, scene.dt)
    return worst, ref, vec


def routes_equal(ref, vec) -> bool:
    B, A = vec.route.shape[:2]
    return all(ref.routes[b][a] == vec.route[b, a, : vec.route_len[b, a]].tolist() for b in range(B) for a in range(A))


def test_names():
    assert POLICIES.get("idm") is VectorisedIDM is IDMPolicy
    assert POLICIES.get("idm_reference") is IDMReference


@pytest.mark.parametrize("index", [0, 2])
def test_generated_scenes_equal_the_reference_step_by_step(gen_scenes, index):
    worst, ref, vec = lockstep(gen_scenes[index], rollouts=2, steps=20)
    assert worst == 0.0
    assert routes_equal(ref, vec)


def test_float64_where_the_reference_widens_float32(gen_scenes):
    """A generated scene where a driver follows a leader at step 1 of its second rollout: the
    approach rate ``speed - speed_leader`` is float32, and IDM multiplies it by the float64 speed
    (numba's ``float()`` keeps a float32 a float32; the kernels widen explicitly)."""
    from drope.sim.generate.scenario import generate_scene

    worst, ref, vec = lockstep(generate_scene(0, 14)[0], rollouts=2, steps=3, seed=14)
    assert worst == 0.0


def test_womd_scene_equals_the_reference_step_by_step(womd_scene):
    worst, ref, vec = lockstep(womd_scene, rollouts=1, steps=15)
    assert worst == 0.0
    assert routes_equal(ref, vec)


def test_benchmark_scene_equals_the_reference_step_by_step(womd_scene):
    """The 128-agent scene of ``drope-bench sim`` (the WOMD scene tiled with its map), and its
    agents tiled without the map (copies far off it: the projection's far paths), two rollouts."""
    from drope.bench.sim import tile_scene

    for with_map in (True, False):
        big = tile_scene(womd_scene, 128, with_map=with_map).validate()
        worst, ref, vec = lockstep(big, rollouts=2, steps=6)
        assert worst == 0.0
        assert routes_equal(ref, vec)


def test_closed_loop_trajectories_equal_the_reference(gen_scenes):
    """Whole rollouts (each policy on its own state), several rollouts with their own routes,
    IDM as the background of a constant-velocity SDC."""
    from drope.sim.policies import ConstantVelocity

    sc = gen_scenes[1]
    dyn = build_dynamics("bicycle")
    sdc = controlled_mask(sc, "sdc")
    out = [run_rollouts(sc, ConstantVelocity(dyn), pol, sdc, dyn, num_rollouts=2, seed=7, steps=30)
           for pol in (IDMReference(dyn), VectorisedIDM(dyn))]
    assert torch.equal(out[0].valid, out[1].valid)
    d = (out[0].xy - out[1].xy).norm(dim=-1)[out[0].valid]
    assert float(d.max()) <= 1e-6
    moved = (out[0].xy[:, :, -1] - out[0].xy[:, :, sc.current_index]).norm(dim=-1)
    assert float(moved.max()) > 5.0  # the agents drive: the comparison is not of standing cars
    assert not torch.equal(out[1].xy[0], out[1].xy[1])  # rollouts draw their own routes


def test_scene_tables_are_built_once_per_scene(gen_scenes):
    dyn = build_dynamics("bicycle")
    pol = VectorisedIDM(dyn)
    sc = gen_scenes[0]
    state = SimState.from_scene(sc, batch=2)
    pol.reset(sc, state, torch.Generator().manual_seed(0))
    tables = pol.tables
    pol.reset(sc, state, torch.Generator().manual_seed(1))
    assert pol.tables is tables
    pol.reset(gen_scenes[1], SimState.from_scene(gen_scenes[1]), torch.Generator().manual_seed(0))
    assert pol.tables is not tables


def test_projection_equals_the_graph_query_step_after_step(womd_scene):
    """The cached projection (disk and candidate proofs, grid nearest, KD ties) against
    ``LaneGraph.project`` for points walking near the lanes, 15-40 m off them and 150-300 m
    off the map, headings drifting, some standing still; two rollouts of their own."""
    T = SceneTables(womd_scene)
    g = T.graph
    rng = np.random.default_rng(1)
    B, A = 2, 90
    base = g.points[rng.integers(0, len(g.points), (B, A))]  # [B, A, 2]
    off = np.where(np.arange(A) < 50, rng.normal(0, 2, A), np.where(np.arange(A) < 70, 15 + 25 * rng.random(A),
                                                                     150 + 150 * rng.random(A)))
    ang = rng.random((B, A)) * 2 * np.pi
    pos = base + off[None, :, None] * np.stack([np.cos(ang), np.sin(ang)], -1)
    h = rng.uniform(-np.pi, np.pi, (B, A))
    step = np.where(np.arange(A) % 5 == 0, 0.0, rng.random(A) * 2.0)  # every fifth stands still
    proj = Projection(T, B, A)
    valid, drivers = np.ones((B, A), bool), np.ones((B, A), bool)
    drivers[1] = False
    drivers[1, 0] = True
    for _ in range(25):
        p32, h32 = pos.astype(np.float32), h.astype(np.float32)
        lane, s = proj(p32, h32, valid, drivers)
        for b in range(B):
            want_lane, want_s, _ = g.project(p32[b].astype(np.float64), h32[b].astype(np.float64))
            assert np.array_equal(lane[b], want_lane) and np.array_equal(s[b], want_s)
        h = h + rng.normal(0, 0.05, (B, A)) * (step > 0)
        pos = pos + step[None, :, None] * np.stack([np.cos(h), np.sin(h)], -1)
    assert proj.kd_queries < B * A  # the proofs, not scipy, answered almost everything


def test_kernels_compile_where_no_cache_location_works(monkeypatch):
    """A read-only install without a writable numba cache directory compiles per process
    instead of failing at import."""
    from numba.core import caching

    from drope.jit import jit

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])

    def plus_one(x):
        return x + 1

    f = jit(plus_one)
    assert f(1) == 2 and type(f._cache).__name__ == "NullCache"


def test_array_lane_poses_equal_the_graph_queries(womd_scene):
    """pose_at / along_route for arrays: the reference's segment choice at every point's exact arc
    length, at lane ends, past them and before the start."""
    T = SceneTables(womd_scene)
    g = T.graph
    rng = np.random.default_rng(0)
    lane = rng.integers(0, g.num_lanes, 400)
    pick = g.offsets[lane] + (rng.random(400) * np.diff(g.offsets)[lane]).astype(int)
    s = np.concatenate([g.s[pick], rng.random(400) * (g.length[lane] + 4.0) - 1.0])
    lane = np.concatenate([lane, lane])
    xy, h = T.pose_at(lane, s)
    want_xy, want_h = g.pose_at(lane, s)
    assert np.array_equal(xy, want_xy) and np.array_equal(h, want_h)
    ref = IDMReference(build_dynamics("bicycle"))
    ref.graph = g
    route = np.array([T.default_route[lane_] for lane_ in lane[:50]])
    n = T.default_len[lane[:50]]
    s_route = rng.random(50) * 80.0
    xy, h = T.along_route(route, n, s_route)
    for k in range(50):
        w_xy, w_h = ref.along_route(route[k, : n[k]].tolist(), float(s_route[k]))
        assert np.array_equal(xy[k], w_xy) and h[k] == w_h


def test_scale_bench_runs_end_to_end(tmp_path):
    """drope-bench sim --scale: simulate, official shards, read back, score; projection labelled."""
    import re

    from drope.bench.sim import scale_bench

    res = scale_bench(1, rollouts=2, workdir=tmp_path)
    assert res["scale_scored"] == 1 and res["scale_shards"] == 1
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "submission.tar.gz" in names
    assert all(re.fullmatch(r"submission\.binproto-\d{5}-of-\d{5}", n) for n in names if n != "submission.tar.gz")
    assert res["scale_scenarios_per_s_per_core"] > 0 and 0.0 < res["scale_metametric_mean"] <= 1.0
    one, ten = (res[f"projection_wosac_validation_hours_{k}"] for k in ("1_machine_16_cores", "10_machines_16_cores"))
    assert abs(one / ten - 10.0) < 1e-9 and res["projection_note"].startswith("projection")
