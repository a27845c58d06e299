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
from tests.fake_model import fake_onnx_model


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    return fake_onnx_model(tmp_path_factory.mktemp("onnx") / "fake.onnx")


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
    from drope.sim.bench_learned import learned_rollout_timings

    res = learned_rollout_timings(gen_scenes[1], onnx_model, rollouts=3)
    assert res["learned_3_rollouts_s"] > 0 and res["learned_3_rollouts_s_sequential"] > 0
    assert res["learned_batched_vs_sequential_max_abs_m"] == 0.0
    assert res["learned_predictions_per_rollout"] == 8 and res["threads"] == 1


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
