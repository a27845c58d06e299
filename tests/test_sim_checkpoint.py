"""The learned policy from a drope-train checkpoint (torch, CPU or GPU) and the one device rule."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from drope.device import resolve_device
from drope.sim import cli
from drope.sim.cli import main
from drope.bench.free_model import free_onnx_model


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """An untrained small model saved as drope-train saves one (the rollouts' quality is not the point)."""
    from drope.model import ModelConfig, build_model
    from drope.model.checkpoint import save_checkpoint

    cfg = ModelConfig(dim=32, num_heads=4, num_blocks=1)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    save_checkpoint(path, {"model_config": cfg.to_dict(), "model": build_model(cfg).state_dict()})
    return path


COMMON = ["generate.num_scenes=1", "rollouts=3", "policy=learned", "mode=sample", "controlled=all", "animate=0",
          "workers=1", "replan_every=20"]


def test_checkpoint_drives_the_simulator_as_the_torch_predictor_does(tiny_ckpt, tmp_path):
    from drope.data.sources import generated_scenes
    from drope.model.checkpoint import load_model
    from drope.sim.dynamics import build_dynamics
    from drope.sim.policies import LearnedPolicy, LogReplay, controlled_mask
    from drope.sim.policies.learned import LearnedConfig
    from drope.sim.policies.predictors import TorchScenePredictor
    from drope.sim.rollout import run_rollouts

    cli._PREDICTORS.clear()
    assert main(COMMON + [f"model={tiny_ckpt}", "model_rows_per_call=null", f"out={tmp_path / 'a'}"]) == 0
    (pred,) = cli._PREDICTORS.values()
    cli._PREDICTORS.clear()
    assert isinstance(pred, TorchScenePredictor) and pred.device == torch.device("cpu") and pred.rows_per_call is None
    assert pred.rows_run > 0
    res = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert res["aggregate"]["num_rollouts"] == 3 and res["aggregate"]["ade"] is not None
    (npz,) = sorted((tmp_path / "a" / "rollouts").glob("*.npz"))
    xy = np.load(npz)["xy"]
    assert np.isfinite(xy[np.load(npz)["valid"]]).all()
    # the same rollouts from the library: predictor + policy + engine, seeded as drope-sim seeds scenario 0
    scene = generated_scenes(1, cli.SimConfig().generate.seed)[0]
    model, _ = load_model(tiny_ckpt)
    dyn = build_dynamics("bicycle")
    policy = LearnedPolicy(dyn, TorchScenePredictor(model, "cpu", None),
                           LearnedConfig(replan_every=20, mode="sample", smooth_steps=cli.SimConfig().smooth_steps))
    ro = run_rollouts(scene, policy, LogReplay(dyn), controlled_mask(scene, "all"), dyn, 3, seed=0)
    np.testing.assert_array_equal(ro.xy.numpy(), xy)
    # one world per forward pass: the same rollouts to float32 rounding of other batch sizes
    assert main(COMMON + [f"model={tiny_ckpt}", "model_rows_per_call=1", f"out={tmp_path / 'b'}"]) == 0
    cli._PREDICTORS.clear()
    xy1 = np.load(sorted((tmp_path / "b" / "rollouts").glob("*.npz"))[0])["xy"]
    np.testing.assert_allclose(xy1, xy, atol=1e-3)  # identical bits on this CPU; other kernels may round apart


def test_model_settings_are_checked_before_any_scenario(tiny_ckpt, tmp_path, capsys):
    onnx_model = free_onnx_model(tmp_path / "fake.onnx")
    if not torch.cuda.is_available():
        assert main(COMMON + [f"model={tiny_ckpt}", "model_device=cuda", f"out={tmp_path / 'a'}"]) == 2
        err = capsys.readouterr().err
        assert "model_device='cuda': no CUDA device is available" in err
    assert main(COMMON + [f"model={onnx_model}", "model_device=cpu", f"out={tmp_path / 'b'}"]) == 2
    assert "model_device=cpu applies to checkpoints" in capsys.readouterr().err
    bogus = tmp_path / "model.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    assert main(COMMON + [f"model={bogus}", f"out={tmp_path / 'c'}"]) == 2
    assert f"{bogus}: not a drope checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "c" / "metrics.json").exists()


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    with pytest.raises(ValueError, match=r"--device='tpu': not a torch device"):
        resolve_device("tpu", "--device")
    with pytest.raises(ValueError, match=r"only auto, cpu, cuda and cuda:N"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda:1': no CUDA device is available"):
            resolve_device("cuda:1")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_checkpoint_on_the_gpu_predicts_what_the_cpu_does(tiny_ckpt, gen_scene):
    from drope.model.checkpoint import load_model
    from drope.sim.policies.predictors import TorchScenePredictor

    model, _ = load_model(tiny_ckpt)
    cpu = TorchScenePredictor(model, "cpu").predict([gen_scene, gen_scene])
    gpu = TorchScenePredictor(load_model(tiny_ckpt)[0], "cuda").predict([gen_scene, gen_scene])
    np.testing.assert_allclose(gpu[0], cpu[0], atol=2e-3)
    np.testing.assert_allclose(gpu[1], cpu[1], atol=1e-4)


def test_bench_sim_learned_only_with_a_checkpoint(tiny_ckpt, womd_path, tmp_path, capsys):
    """drope-bench sim --learned-only: the learned keys alone, the checkpoint on --device (the GPU check's call)."""
    from drope.bench.cli import main as bench

    out = tmp_path / "l.json"
    assert bench(["sim", "--womd", str(womd_path), "--model", str(tiny_ckpt), "--device", "cpu", "--learned-only",
                  "--learned-rollouts", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["learned_device"] == "cpu" and res["learned_rows_per_call_batched"] == 1
    assert res["learned_2_rollouts_s"] > 0 and res["learned_2_rollouts_s_sequential"] > 0
    assert res["learned_batched_vs_sequential_max_abs_m"] == 0.0 and res["onnx_predictions_per_rollout"] == 8
    assert res["learned_call_ms"] > 0 and "learned_call_profile" not in res  # the profile is ONNX Runtime's
    assert not any(k.startswith(("idm_", "log_replay", "scale_")) for k in res)
    if not torch.cuda.is_available():
        assert bench(["sim", "--womd", str(womd_path), "--model", str(tiny_ckpt), "--device", "cuda",
                      "--learned-only"]) == 2
        assert "--device='cuda': no CUDA device is available" in capsys.readouterr().err
