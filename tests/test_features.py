"""The feature contract: one FeatureSpec read by collation, the model, checkpoints, ONNX export and the
runtime; a WOMD-shaped (11/80) and an Argoverse 2-shaped (50/60) model both run end to end."""
from __future__ import annotations

import dataclasses
import inspect
import logging

import numpy as np
import pytest
import torch

from drope.data.batch import collate_scenes, pad_history
from drope.data.features import DATASET_FEATURES, FeatureSpec, features_for_data
from drope.data.scene import Scene
from drope.model import DRoPETransformer, ModelConfig, build_model
from drope.model.checkpoint import load_model, save_checkpoint
from tests.builders import av2_shaped


def tiny(spec: FeatureSpec) -> DRoPETransformer:
    torch.manual_seed(0)
    return build_model(ModelConfig(dim=16, num_heads=2, num_blocks=1, local_map_segments=4, features=spec)).eval()


def test_spec_values_are_checked_and_errors_name_the_field():
    with pytest.raises(ValueError, match=r"features\.history: must be an int >= 1, got 0"):
        FeatureSpec(history=0)
    with pytest.raises(ValueError, match=r"features\.segment_points"):
        FeatureSpec(segment_points=1)
    with pytest.raises(ValueError, match=r"features\.segment_len"):
        FeatureSpec(segment_len=float("nan"))
    with pytest.raises(ValueError, match=r"features\.a2a_radius"):
        FeatureSpec(a2a_radius=-1.0)
    with pytest.raises(ValueError, match=r"ckpt\.features\.future: must be an int"):
        FeatureSpec.from_dict({"future": "80"}, "ckpt.features")
    with pytest.raises(ValueError, match=r"x: unknown key\(s\) \['horizon'\]"):
        FeatureSpec.from_dict({"horizon": 60}, "x")
    with pytest.raises(ValueError, match="expected a mapping"):
        FeatureSpec.from_dict([11, 80], "x")
    assert FeatureSpec(m2m_radius=40).m2m_radius == 40.0 and isinstance(FeatureSpec(m2m_radius=40).m2m_radius, float)
    assert FeatureSpec.from_dict(FeatureSpec(history=50).to_dict()) == FeatureSpec(history=50)


def test_input_names_are_the_forward_contract(gen_scenes):
    from drope.export.onnx_export import INPUTS, ExportWrapper

    for fn in (DRoPETransformer.forward, ExportWrapper.forward):
        assert tuple(inspect.signature(fn).parameters)[1:] == FeatureSpec.input_names, fn.__qualname__
    assert tuple(FeatureSpec().input_table()) == FeatureSpec.input_names == tuple(INPUTS)
    assert tuple(collate_scenes(gen_scenes[:1]).model_inputs()) == FeatureSpec.input_names


def test_legacy_collate_arguments_equal_the_spec(gen_scenes):
    spec = FeatureSpec(history=5, future=30, max_agents=6, max_map=40, segment_len=12.0, segment_points=6)
    new = collate_scenes(gen_scenes[:2], spec)
    for old in (collate_scenes(gen_scenes[:2], 5, 30, 6, 40, 12.0, 6),
                collate_scenes(gen_scenes[:2], history=5, future=30, max_agents=6, max_map=40, segment_len=12.0,
                               segment_points=6)):
        for name, v in new.tensor_items():
            assert torch.equal(v, getattr(old, name)), name
    assert new.agent_pos.shape[1:3] == (6, 5) and new.future_pos.shape[2] == 30 and new.map_points.shape[1:3] == (40, 6)
    with pytest.raises(TypeError, match="not both"):
        collate_scenes(gen_scenes[:1], spec, max_agents=3)
    with pytest.raises(TypeError, match="unexpected"):
        collate_scenes(gen_scenes[:1], histroy=5)
    with pytest.raises(ValueError, match=r"features\.history"):
        collate_scenes(gen_scenes[:1], FeatureSpec(history=12))  # generated scenes have 11 steps of history


def test_model_refuses_inputs_cut_for_another_spec(gen_scenes):
    m = tiny(DATASET_FEATURES.get("womd"))
    inp = collate_scenes(gen_scenes[:1], FeatureSpec(history=8)).model_inputs()
    with pytest.raises(ValueError, match="expects 11 history steps"):
        m(**inp)


def test_pad_history_adds_unobserved_steps_only(gen_scenes):
    scene = gen_scenes[0]
    assert pad_history(scene, 11) is scene
    p = pad_history(scene, 50).validate()
    assert (p.current_index, p.num_steps) == (49, scene.num_steps + 39)
    assert not p.agent_valid[:, :39].any() and torch.equal(p.agent_pos[:, 39:], scene.agent_pos)
    assert bool((p.timestamps.diff() > 0).all()) and (p.signal_lane_id[:39] == -1).all()
    short = collate_scenes([scene], FeatureSpec()).model_inputs()
    long = collate_scenes([p], FeatureSpec(history=50)).model_inputs()
    assert torch.equal(long["agent_pos"][:, :, 39:], short["agent_pos"]) and not long["agent_valid"][:, :, :39].any()


def test_features_follow_the_data(gen_scenes):
    assert features_for_data(gen_scenes[:2]) == FeatureSpec()
    av2 = av2_shaped(gen_scenes[0])
    assert (features_for_data([av2]).history, features_for_data([av2]).future) == (50, 60)
    with pytest.raises(ValueError, match="one dataset"):
        features_for_data([av2, gen_scenes[0]])
    with pytest.raises(ValueError, match="unknown dataset features 'nuscenes'"):
        features_for_data([dataclasses.replace(av2, source="nuscenes")])


def _legacy_config(cfg: ModelConfig) -> dict:
    """A model_config as checkpoints wrote it before the feature contract (flat keys, no features)."""
    d = cfg.to_dict()
    f = d.pop("features")
    d.update(history=f["history"], future=f["future"], map_points=f["segment_points"], a2a_radius=f["a2a_radius"],
             m2a_radius=f["m2a_radius"], m2m_radius=f["m2m_radius"])
    return d


def test_checkpoints_carry_the_spec_and_old_or_garbled_ones_are_named(tmp_path, caplog):
    spec = DATASET_FEATURES.get("av2")
    model = tiny(spec)
    good = tmp_path / "av2.ckpt"
    save_checkpoint(good, {"model": model.state_dict(), "model_config": model.cfg.to_dict()})
    assert load_model(good)[0].cfg.features == spec

    womd = tiny(FeatureSpec())
    old = tmp_path / "old.ckpt"
    save_checkpoint(old, {"model": womd.state_dict(), "model_config": _legacy_config(womd.cfg)})
    with caplog.at_level(logging.WARNING):
        loaded, _ = load_model(old)
    assert loaded.cfg.features == FeatureSpec() and "no 'features' block" in caplog.text

    cases = {
        "garbage": ({**model.cfg.to_dict(), "features": {**spec.to_dict(), "history": -3}},
                    r"model_config\.features\.history: must be an int"),
        "unknown": ({**model.cfg.to_dict(), "features": {**spec.to_dict(), "horizon": 6}}, "unknown key"),
        "both": ({**model.cfg.to_dict(), "history": 50}, r"\['history'\] belong under 'features'"),
        "mismatch": ({**model.cfg.to_dict(), "features": {**spec.to_dict(), "future": 80}},
                     r"sized by features\.future"),
    }
    for name, (cfg, msg) in cases.items():
        path = tmp_path / f"{name}.ckpt"
        save_checkpoint(path, {"model": model.state_dict(), "model_config": cfg})
        with pytest.raises(ValueError, match=msg) as e:
            load_model(path)
        assert str(path) in str(e.value), name


def test_av2_spec_goes_through_collate_model_checkpoint_export_and_runtime(gen_scenes, tmp_path):
    """A model built for AV2's spec: collation cuts its history/future, the model predicts its horizon,
    drope-export turns its checkpoint into an ONNX file (verified against torch on generated scenes
    fitted to its history), and the torch-free runtime reads the spec back, serves 60 steps and
    windows whole tracks. (The WOMD-shaped model takes the same path in tests/test_export.py.)"""
    import json

    from drope.export.cli import main as export_main
    from drope.export.runtime import InputError, OnnxPredictor

    spec = DATASET_FEATURES.get("av2")
    scenes = [av2_shaped(s) for s in gen_scenes[:3]]
    H, F = spec.history, spec.future
    model = tiny(spec)
    batch = collate_scenes(scenes[:2], model.cfg.features)
    assert batch.agent_pos.shape[2] == H and batch.future_pos.shape[2] == F
    traj, _, _ = model(**batch.model_inputs())
    assert traj.shape[3] == F

    ckpt, path = tmp_path / "av2.ckpt", tmp_path / "av2.onnx"
    save_checkpoint(ckpt, {"model": model.state_dict(), "model_config": model.cfg.to_dict()})
    assert export_main([f"ckpt={ckpt}", f"out={path}", "variants=[]", "verify_scenes=2"]) == 0
    report = json.loads(path.with_suffix(".verify.json").read_text())
    assert report["generated"]["fp32"]["max_abs_err_m"] < 1e-3
    runtime = OnnxPredictor(path)
    assert runtime.features == spec.to_dict() and runtime.input_names == list(FeatureSpec.input_names)
    assert runtime.spec["inputs"]["agent_pos"]["shape"] == ["B", "A", H, 2]
    feed = {k: v.numpy() for k, v in collate_scenes(scenes[2:], spec).model_inputs().items()}
    out = runtime.predict(feed)
    assert out.traj.shape[3] == F and np.isfinite(out.traj).all()

    # the runtime's own preprocessing: whole tracks up to the current step → the model's window
    t = scenes[2].current_index
    full = collate_scenes(scenes[2:], dataclasses.replace(spec, history=t + 1)).model_inputs()
    windowed = runtime.history_window({k: v.numpy() for k, v in full.items()}, t)
    for k in feed:
        assert np.array_equal(windowed[k], feed[k]), k
    assert np.array_equal(runtime.predict(windowed).traj, out.traj)
    with pytest.raises(InputError, match=f"fewer than the model's {H} history steps"):
        runtime.history_window(feed, H - 2)
