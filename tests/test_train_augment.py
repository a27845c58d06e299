"""Closed-loop training augmentation: current-step shift, history perturbation, determinism."""
from __future__ import annotations

import pytest
import torch

from drope.data.batch import collate_scenes
from drope.model import ModelConfig
from drope.train.augment import (AugmentConfig, at_step, finite_difference_velocity, perturb_history,
                                 sample_generator, usable_steps)
from drope.train.trainer import Trainer, TrainConfig
from drope.sim.generate.scenario import generate_scene


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(21, i)[0] for i in range(3)]


def _batch(scene):
    return collate_scenes([scene], 11, 80, 64, 384, segment_points=8)


def test_finite_difference_velocity_matches_the_generated_data(scenes):
    b = _batch(scenes[0])
    v = finite_difference_velocity(b.agent_pos, b.agent_valid, 0.1)
    inner = b.agent_valid[:, :, :-2] & b.agent_valid[:, :, 1:-1] & b.agent_valid[:, :, 2:]
    # the generator differences central inside a run (its last history step also sees t + 1, which we cannot)
    assert (v[:, :, 1:-1] - b.agent_vel[:, :, 1:-1])[inner].abs().max() < 1e-3
    assert torch.all(v[~b.agent_valid] == 0)


def test_at_step_reframes_to_the_sdc_and_keeps_world_coordinates(scenes):
    s = scenes[0]
    s2 = at_step(s, 40)
    i = s.sdc_index
    assert s2.current_index == 40
    assert s2.agent_pos[i, 40].abs().max() < 1e-3 and abs(float(s2.agent_heading[i, 40])) < 1e-5
    v = s.agent_valid
    assert abs(s2.to_world_xy(s2.agent_pos[v]) - s.to_world_xy(s.agent_pos[v])).max() < 1e-3
    assert at_step(s, s.current_index) is s
    assert usable_steps(s, [5, 10, 50, 90], history=11) == [10, 50]  # 5: too little history; 90: nothing to predict


def test_perturbation_shifts_the_current_pose_and_recovers_to_the_log(scenes):
    b = _batch(scenes[1])
    cfg = AugmentConfig(perturb_prob=1.0, perturb_lateral_m=0.5, perturb_heading_rad=0.05, perturb_recover_steps=20,
                        perturb_profile="ramp")
    p = perturb_history(b, cfg, sample_generator(3, 7))
    q = perturb_history(b, cfg, sample_generator(3, 7))
    assert torch.equal(p.agent_pos, q.agent_pos) and torch.equal(p.future_pos, q.future_pos)  # seeded
    m = b.agent_mask & b.agent_valid[:, :, 0] & b.agent_valid[:, :, -1]
    d_now = (p.agent_pos[:, :, -1] - b.agent_pos[:, :, -1]).norm(dim=-1)[m]
    assert d_now.max() > 0.1  # the current pose moved...
    assert (p.agent_pos[:, :, 0] - b.agent_pos[:, :, 0])[m].abs().max() < 1e-5  # ...the oldest one did not
    # sideways: the offset is perpendicular to the current heading
    h = b.agent_heading[:, :, -1]
    fwd = torch.stack([torch.cos(h), torch.sin(h)], -1)
    along = ((p.agent_pos[:, :, -1] - b.agent_pos[:, :, -1]) * fwd).sum(-1)[m]
    assert along.abs().max() < 1e-3
    fv = b.future_valid[:, :, 19:]
    assert (p.future_pos[:, :, 19:] - b.future_pos[:, :, 19:])[fv].abs().max() < 1e-4  # back on the log
    assert (p.future_pos[:, :, 0] - b.future_pos[:, :, 0])[b.future_valid[:, :, 0] & m].abs().max() > 0.05
    # recomputed velocities are the finite differences of the perturbed history
    fd = finite_difference_velocity(p.agent_pos, p.agent_valid, 0.1)
    assert torch.allclose(p.agent_vel[m], fd[m])
    off = perturb_history(b, AugmentConfig(perturb_prob=0.0), sample_generator(3, 7))
    assert off is b
    with pytest.raises(ValueError, match="perturb_prob"):
        AugmentConfig(perturb_prob=1.5)


def test_rigid_perturbation_moves_the_whole_history_and_leaves_its_own_frame_unchanged(scenes):
    """Rigid profile: the history in the agent's current frame is exactly the log's (only the map,
    seen from the new pose, shows the offset); the target still recovers to the log."""
    b = _batch(scenes[1])
    cfg = AugmentConfig(perturb_prob=1.0, perturb_lateral_m=0.5, perturb_heading_rad=0.05, perturb_profile="rigid")
    p = perturb_history(b, cfg, sample_generator(3, 7))
    m = b.agent_mask & b.agent_valid.all(-1)

    def own_frame(batch):
        h, p0 = batch.agent_heading[:, :, -1:], batch.agent_pos[:, :, -1:]
        d = batch.agent_pos - p0
        c, s = torch.cos(h), torch.sin(h)
        return torch.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1), batch.agent_heading - h

    (xy_b, dh_b), (xy_p, dh_p) = own_frame(b), own_frame(p)
    assert (xy_b - xy_p)[m].abs().max() < 1e-3 and (dh_b - dh_p)[m].abs().max() < 1e-5
    moved = (p.agent_pos[:, :, 0] - b.agent_pos[:, :, 0]).norm(dim=-1)[m]
    assert moved.max() > 0.1  # the oldest step moved too (a ramp would keep it)
    fv = b.future_valid[:, :, 19:]
    assert (p.future_pos[:, :, 19:] - b.future_pos[:, :, 19:])[fv].abs().max() < 1e-4
    with pytest.raises(ValueError, match="perturb_profile"):
        AugmentConfig(perturb_profile="wobbly")


def test_trainer_augmented_batches_are_a_function_of_seed_and_step(scenes, tmp_path):
    aug = AugmentConfig(current_steps=[10, 30, 50, 70], perturb_prob=0.5, perturb_lateral_m=0.3)
    mc = ModelConfig(dim=32, num_heads=4, num_blocks=1)

    def make(name):
        return Trainer(TrainConfig(out=str(tmp_path / name), steps=4, batch_size=3, progress=False, augment=aug), mc, scenes, [])

    a, b = make("a"), make("b")
    seen = set()
    for step in range(6):
        a.step = b.step = step
        x, y = a.train_batch(), b.train_batch()
        assert torch.equal(x.agent_pos, y.agent_pos) and torch.equal(x.future_valid, y.future_valid)
        seen |= {k[2] for k in a._cache}
    assert len(seen) >= 3  # several current steps drawn
    # a late current step leaves only the log's remaining future to learn from
    late = a.collate([at_step(scenes[0], 70)])
    assert int(late.future_valid[0, :, 20:].sum()) == 0 and bool(late.future_valid[0, :, :20].any())
    a.step = 0
    out = a.fit()
    assert out["step"] == 4 and torch.isfinite(torch.tensor(out["train"]["loss"]))
