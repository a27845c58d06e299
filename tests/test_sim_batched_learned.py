"""Batched learned rollouts: one predictor call per replan serves every world, and rollout r of a
batched run equals rollout r run alone (sampling is seeded per rollout)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from drope.sim.dynamics import build_dynamics
from drope.sim.policies import LearnedPolicy, LogReplay, controlled_mask
from drope.sim.policies.learned import LearnedConfig
from drope.sim.policies.predictors import OnnxScenePredictor
from drope.sim.rollout import RolloutRng, rollout_seed, run_rollouts
from drope.bench.free_model import free_onnx_model


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    return free_onnx_model(tmp_path_factory.mktemp("onnx") / "fake.onnx")


class CountingPredictor:
    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def predict(self, scenes):
        self.batches.append(len(scenes))
        return self.inner.predict(scenes)


def test_batched_rollouts_equal_rollouts_run_alone(gen_scenes, onnx_model):
    scene = gen_scenes[0]
    dyn = build_dynamics("bicycle")
    pred = CountingPredictor(OnnxScenePredictor(onnx_model, threads=1))
    policy = LearnedPolicy(dyn, pred, LearnedConfig(mode="sample", replan_every=10))
    mask = controlled_mask(scene, "all")

    def go(ids, seed=7):
        return run_rollouts(scene, policy, LogReplay(dyn), mask, dyn, len(ids), seed=seed, steps=21, rollout_ids=ids)

    batched = go([0, 1, 2, 3])
    assert pred.batches == [4] * 3  # 21 steps at 1 Hz: 3 replans, each one call for all 4 worlds
    for r in (0, 2):
        alone = go([r])
        assert torch.equal(alone.xy[0], batched.xy[r]) and torch.equal(alone.heading[0], batched.heading[r])
    # the worlds really sample: not all rollouts follow the same modes
    assert any(not torch.equal(batched.xy[0], batched.xy[r]) for r in range(1, 4))
    # a subset in another order is still the same rollouts
    sub = go([3, 1])
    assert torch.equal(sub.xy[0], batched.xy[3]) and torch.equal(sub.xy[1], batched.xy[1])
    assert not torch.equal(go([0], seed=8).xy[0], batched.xy[0])  # and the run seed matters


def test_rollout_rng_streams():
    g = RolloutRng(5, [0, 1, 2])
    assert isinstance(g, torch.Generator) and g.initial_seed() == 5 and len(g.worlds) == 3
    assert [w.initial_seed() for w in g.worlds] == [rollout_seed(5, r) for r in range(3)]
    assert len({rollout_seed(5, r) for r in range(100)} | {rollout_seed(6, r) for r in range(100)}) == 200
    with pytest.raises(ValueError, match="rollout_ids has 2 ids for num_rollouts=3"):
        dyn = build_dynamics("delta")
        from tests.builders import make_scene

        sc = make_scene()
        run_rollouts(sc, LogReplay(dyn), LogReplay(dyn), controlled_mask(sc, "all"), dyn, 3, rollout_ids=[0, 1])


def test_learned_rollout_timings_reports_both_and_their_agreement(gen_scenes, onnx_model):
    from drope.bench.sim_learned import learned_rollout_timings

    res = learned_rollout_timings(gen_scenes[1], onnx_model, rollouts=3)
    assert res["learned_3_rollouts_s"] > 0 and res["learned_3_rollouts_s_sequential"] > 0
    assert res["learned_batched_vs_sequential_max_abs_m"] == 0.0
    assert res["learned_predictions_per_rollout"] == 8 and res["threads"] == 1
    # 8 replans x 3 worlds alone; batched, the first replan's 3 identical worlds are one row
    assert res["learned_model_rows_sequential"] == 24 and res["learned_model_rows_batched"] <= 22


def test_nan_from_the_predictor_is_a_named_error(gen_scenes):
    scene = gen_scenes[0]

    class NanAt:
        def predict(self, scenes):
            traj = np.zeros((len(scenes), scene.num_agents, 2, 80, 2), np.float32)
            traj[-1, 3, 1, 40] = np.nan
            return traj, np.full((len(scenes), scene.num_agents, 2), 0.5, np.float32)

    dyn = build_dynamics("delta")
    with pytest.raises(ValueError, match=rf"scenario {scene.scenario_id}: the predictor returned NaN/Inf at step "
                                         rf"{scene.current_index} \(world 1, object {int(scene.agent_id[3])}\)"):
        run_rollouts(scene, LearnedPolicy(dyn, NanAt()), LogReplay(dyn), controlled_mask(scene, "all"), dyn, 2, steps=2)


def test_collate_worlds_equals_collating_the_snapshots(womd_path):
    """The vectorised collation of all worlds gives the inputs collate_scenes builds from each world's
    re-framed snapshot Scene (to float32 rounding), on the real scene with worlds in other frames."""
    import dataclasses

    from drope.data.batch import collate_scenes
    from drope.data.segments import split_polylines
    from drope.data.womd import read_scenarios
    from drope.sim.policies.predictors import collate_worlds
    from drope.sim.state import SimState

    scene = next(read_scenarios(womd_path))
    dyn = build_dynamics("bicycle")
    policy = LearnedPolicy(dyn, None)
    state = SimState.from_scene(scene, scene.current_index, batch=3)
    g = torch.Generator().manual_seed(0)
    shift = torch.randn(3, 1, 2, generator=g) * 30  # each world somewhere else, turned another way
    state = dataclasses.replace(state, pos=state.pos + shift, heading=state.heading + torch.tensor([[0.0], [2.5], [-3.0]]))
    policy.reset(scene, state, g)
    policy.observe(state)
    frames = policy.frames(state)
    assert frames[:, 2].abs().max() > 2  # real rotations
    kw = dict(history=11, future=80, segment_points=8, segment_len=20.0)
    ref = collate_scenes(policy.snapshots(state, frames), **kw)
    worlds = (policy.h_xy, policy.h_heading, policy.h_vel, policy.h_valid, state.size, state.step)
    fast, agent_index = collate_worlds(scene, worlds, frames, kw, split_polylines(scene, 20.0, 8))
    assert torch.equal(agent_index, ref.agent_index[0])
    for k, v in ref.model_inputs().items():
        assert fast[k].shape == v.shape and fast[k].dtype == v.dtype, k
        if v.dtype == torch.float32:
            d = (fast[k] - v).abs()
            if k == "agent_heading":
                d = torch.minimum(d, 2 * torch.pi - d)
            assert float(d.max()) < 1e-3, (k, float(d.max()))
        else:
            assert torch.equal(fast[k], v), k
    # worlds that disagree on which agents exist take the snapshot path
    valid = policy.h_valid.clone()
    valid[1, int(ref.agent_index[0, 0]), state.step] = False
    assert collate_worlds(scene, (*worlds[:3], valid, *worlds[4:]), frames, kw, split_polylines(scene, 20.0, 8)) is None


def test_fast_and_snapshot_paths_drive_the_same_rollouts(gen_scenes, onnx_model):
    class SnapshotsOnly:
        def __init__(self, inner):
            self.inner = inner

        def predict(self, scenes):
            return self.inner.predict(scenes)

    scene = gen_scenes[2]
    dyn = build_dynamics("bicycle")
    pred = OnnxScenePredictor(onnx_model, threads=1)
    mask = controlled_mask(scene, "all")
    fast, slow = (run_rollouts(scene, LearnedPolicy(dyn, p, LearnedConfig(mode="sample")), LogReplay(dyn), mask, dyn, 3,
                               seed=1, steps=21) for p in (pred, SnapshotsOnly(pred)))
    ok = fast.valid & slow.valid
    assert float((fast.xy - slow.xy)[ok].abs().max()) < 1e-3


def test_learned_keys_name_the_model_and_refuse_a_missing_file(gen_scenes, onnx_model, tmp_path):
    """What ``drope-bench sim`` adds: both timings, labelled with the model they were measured with."""
    from drope.bench.sim_learned import learned_keys

    res = learned_keys(gen_scenes[1], onnx_model, rollouts=2)
    assert res["learned_2_rollouts_s"] > 0 and res["learned_2_rollouts_s_sequential"] > 0
    assert res["learned_model"] == str(onnx_model)
    # the per-call profile: the hand-built graph carries no exporter name scopes, so no model module
    assert res["learned_call_ms"] > 0 and res["learned_call_ms_per_world_batched"] > 0
    assert res["learned_call_profile"] == {"wrapper": 1.0} and res["learned_map_encoding_share"] == 0.0
    with pytest.raises(FileNotFoundError, match="--model: no such file: .*missing.onnx"):
        learned_keys(gen_scenes[1], tmp_path / "missing.onnx", rollouts=2)
    from drope.bench.sim import main

    assert main(["--model", str(tmp_path / "missing.onnx")]) == 2


def test_distinct_worlds_finds_the_first_world_of_each_input_set():
    from drope.sim.policies.predictors import distinct_worlds

    a = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [1.0, 2.0], [3.0, 4.0]])
    m = torch.tensor([[True], [True], [True], [False], [True]])  # world 3 differs in a second input only
    rows, inverse = distinct_worlds({"x": a, "mask": m})
    assert rows.tolist() == [0, 1, 3] and inverse.tolist() == [0, 1, 0, 2, 1]
    rows, inverse = distinct_worlds({"x": a[:1]})
    assert rows.tolist() == [0] and inverse.tolist() == [0]


@pytest.mark.parametrize("mode, rows_per_replan", [("max", [1, 1, 1]), ("sample", [1, 4, 4])])
def test_worlds_with_identical_inputs_share_one_model_row(gen_scenes, onnx_model, mode, rows_per_replan):
    """Every world starts from the log, so the first replan has one distinct input set; a
    deterministic policy keeps the worlds identical, sampled modes make them diverge. The
    rollouts are those of each world run alone (sharing a row changes nothing but the work)."""
    scene = gen_scenes[0]
    dyn = build_dynamics("bicycle")
    pred = OnnxScenePredictor(onnx_model, threads=1)
    calls = []
    run = pred._run

    def counting(inputs):
        calls.append(next(iter(inputs.values())).shape[0])
        return run(inputs)

    pred._run = counting
    policy = LearnedPolicy(dyn, pred, LearnedConfig(mode=mode, replan_every=10))
    mask = controlled_mask(scene, "all")

    def go(ids):
        return run_rollouts(scene, policy, LogReplay(dyn), mask, dyn, len(ids), seed=3, steps=21, rollout_ids=ids)

    batched = go([0, 1, 2, 3])
    assert calls == rows_per_replan and pred.rows_run == sum(rows_per_replan)
    for r in range(4):
        alone = go([r])
        assert torch.equal(alone.xy[0], batched.xy[r]) and torch.equal(alone.heading[0], batched.heading[r])


def test_call_profile_attributes_kernel_time_to_model_modules(onnx_model, tmp_path):
    """ONNX Runtime's per-node kernel times, grouped by the exporter's name_scopes metadata (here
    written onto the hand-built graph's nodes: the first three as map layers, the rest as the head)."""
    import onnx

    from drope.bench.sim_learned import call_profile, module_of

    assert module_of("['', 'model', 'model.map_layers.0', 'model.map_layers.0.attn', 'linear']") == "map_layers"
    assert module_of("['', 'model', 'model.local_map', 'where_']") == "local_map"
    assert module_of("['', 'model', 'slice_14']") == "model"
    assert module_of("['', 'atan2_1']") == "wrapper" and module_of("not a list") == "wrapper"
    m = onnx.load(str(onnx_model))
    for i, n in enumerate(m.graph.node):
        n.name = f"node_{i}"  # the profile names kernels by node name; the hand-built nodes have none
        p = n.metadata_props.add()
        p.key = "pkg.torch.onnx.name_scopes"
        p.value = str(["", "model", "model.map_layers.0" if i < 3 else "model.head_traj", n.op_type.lower()])
    path = tmp_path / "scoped.onnx"
    onnx.save(m, str(path))
    rng = np.random.default_rng(0)
    inputs = {"agent_pos": rng.normal(size=(2, 4, 11, 2)), "agent_heading": rng.normal(size=(2, 4, 11)),
              "agent_vel": rng.normal(size=(2, 4, 11, 2)), "agent_size": np.ones((2, 4, 3)),
              "agent_type": np.ones((2, 4), np.int64), "agent_valid": np.ones((2, 4, 11), bool),
              "map_points": rng.normal(size=(2, 3, 8, 2)), "map_type": np.ones((2, 3), np.int64),
              "map_signal": np.zeros((2, 3), np.int64), "map_mask": np.ones((2, 3), bool)}
    inputs = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in inputs.items()}
    shares = call_profile(path, inputs, runs=3)
    assert set(shares) == {"map_layers", "head_traj"} and abs(sum(shares.values()) - 1) < 1e-9
    assert all(v > 0 for v in shares.values())


def test_rows_per_call_splits_a_replan_into_runtime_calls(gen_scenes, onnx_model):
    scene = gen_scenes[0]
    dyn = build_dynamics("bicycle")
    mask = controlled_mask(scene, "all")
    runs = {}
    for n, want in [(1, [1] * 9), (3, [1, 3, 1, 3, 1]), (None, [1, 4, 4])]:
        pred = OnnxScenePredictor(onnx_model, threads=1, rows_per_call=n)
        calls = []
        predict = pred.runtime.predict
        pred.runtime.predict = lambda feed, predict=predict, calls=calls: (calls.append(len(feed["agent_pos"])), predict(feed))[1]
        policy = LearnedPolicy(dyn, pred, LearnedConfig(mode="sample"))
        runs[n] = run_rollouts(scene, policy, LogReplay(dyn), mask, dyn, 4, seed=3, steps=21)
        assert calls == want, n  # 3 replans; the first one's 4 identical worlds are one row
    assert torch.equal(runs[1].xy, runs[None].xy) and torch.equal(runs[3].xy, runs[None].xy)
    with pytest.raises(ValueError, match="rows_per_call must be >= 1 or None, got 0"):
        OnnxScenePredictor(onnx_model, rows_per_call=0)


def test_map_frame_kernel_equals_the_tensor_transform():
    """points_to_frames (compiled) is the float64 tensor transform rounded to float32, bit for bit."""
    import numpy as np

    from drope.sim.policies.frame_kernels import points_to_frames

    g = torch.Generator().manual_seed(1)
    B, N = 5, 997
    pts = (torch.randn(N, 2, generator=g) * 300).float()
    f = torch.cat([torch.randn(B, 2, generator=g, dtype=torch.float64) * 80,
                   (torch.rand(B, 1, generator=g, dtype=torch.float64) - 0.5) * 6.3], 1)
    c, s = torch.cos(f[:, 2]), torch.sin(f[:, 2])
    d = pts[None].double() - f[:, None, :2]
    ref = torch.stack([c[:, None] * d[..., 0] + s[:, None] * d[..., 1], -s[:, None] * d[..., 0] + c[:, None] * d[..., 1]],
                      -1).float()
    out = np.empty((B, N, 2), np.float32)
    points_to_frames(pts.numpy(), f[:, 0].contiguous().numpy(), f[:, 1].contiguous().numpy(), c.numpy(), s.numpy(), out)
    assert np.array_equal(out, ref.numpy())
