"""drope-sim end to end (generated and WOMD scenes, outputs, determinism, ONNX policy) and drope-bench sim."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sim.cli import main

AGG_KEYS = {"ade", "fde", "collision_rate", "offroad_rate", "kinematic_infeasibility_rate", "red_light_violation_rate",
            "num_rollouts"}


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    """A hand-built ONNX file with the drope runtime contract (inputs, outputs, metadata): every agent
    drives straight on from its last position at 5 m/s in scene x, mode k drifting k·0.5 m/s in y.
    Building it takes milliseconds where exporting a real model takes ~20 s; real exports are
    covered by the export tests, the ONNX runtime path of the simulator here."""
    import onnx
    from onnx import TensorProto, helper

    K, F, H, S = 3, 80, 11, 8
    f = np.arange(1, F + 1, dtype=np.float32) * 0.1
    off = np.stack([np.stack([5.0 * f, 0.5 * k * f], -1) for k in range(K)]).astype(np.float32)  # [K, F, 2]
    spec_in = {"agent_pos": ("float32", ["B", "A", H, 2]), "agent_heading": ("float32", ["B", "A", H]),
               "agent_vel": ("float32", ["B", "A", H, 2]), "agent_size": ("float32", ["B", "A", 3]),
               "agent_type": ("int64", ["B", "A"]), "agent_valid": ("bool", ["B", "A", H]),
               "map_points": ("float32", ["B", "M", S, 2]), "map_type": ("int64", ["B", "M"]),
               "map_signal": ("int64", ["B", "M"]), "map_mask": ("bool", ["B", "M"])}
    onnx_type = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "bool": TensorProto.BOOL}
    c = lambda name, arr: helper.make_tensor(name, onnx_type[str(arr.dtype)] if str(arr.dtype) in onnx_type else TensorProto.INT64,  # noqa: E731
                                               arr.shape, arr.flatten().tolist())
    inits = [c("last", np.array(-1, np.int64)), c("off", off), c("ax23", np.array([2, 3], np.int64)),
             c("ax234", np.array([2, 3, 4], np.int64)), c("ax2", np.array([2], np.int64)),
             c("zeros", np.zeros((K, F, 1), np.float32)), c("zero", np.array(0.0, np.float32)),
             c("probs", np.array([0.5, 0.3, 0.2], np.float32))]
    nodes = [helper.make_node("Gather", ["agent_pos", "last"], ["p"], axis=2),
             helper.make_node("Unsqueeze", ["p", "ax23"], ["p5"]), helper.make_node("Add", ["p5", "off"], ["xy"]),
             helper.make_node("Gather", ["agent_heading", "last"], ["h"], axis=2),
             helper.make_node("Unsqueeze", ["h", "ax234"], ["h5"]), helper.make_node("Add", ["h5", "zeros"], ["hh"]),
             helper.make_node("Concat", ["xy", "hh"], ["traj"], axis=-1),
             helper.make_node("Unsqueeze", ["h", "ax2"], ["h3"]), helper.make_node("Mul", ["h3", "zero"], ["z3"]),
             helper.make_node("Add", ["z3", "probs"], ["prob"])]
    inputs = [helper.make_tensor_value_info(n, onnx_type[d], shape) for n, (d, shape) in spec_in.items()]
    outputs = [helper.make_tensor_value_info("traj", TensorProto.FLOAT, ["B", "A", K, F, 3]),
               helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["B", "A", K])]
    model = helper.make_model(helper.make_graph(nodes, "fake_drope", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    spec = {"inputs": {n: {"dtype": d, "shape": shape} for n, (d, shape) in spec_in.items()},
            "history": H, "future": F, "num_modes": K, "map_points": S, "dt": 0.1, "segment_max_len_m": 20.0}
    for k, v in {"drope_format_version": "1", "feature_spec": json.dumps(spec), "model_config": "{}"}.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("onnx") / "fake.onnx"
    onnx.save(model, str(path))
    return path


def _npz(out):
    files = sorted((out / "rollouts").glob("*.npz"))
    return files, [dict(np.load(f)) for f in files]


def test_generated_scenes_outputs_and_determinism(tmp_path, capsys):
    args = ["generate.num_scenes=2", "rollouts=2", "policy=idm", "animate=1", "workers=1"]
    assert main(args + [f"out={tmp_path / 'a'}"]) == 0
    table = capsys.readouterr().out
    assert "ALL (pooled)" in table and "collision" in table
    res = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert AGG_KEYS <= set(res["aggregate"]) and res["aggregate"]["num_rollouts"] == 4
    assert len(res["scenarios"]) == 2 and all("collision_rate" in e for e in res["scenarios"])
    anim = res["animations"][0]
    assert anim["frames"] == 81 and (tmp_path / "a" / "animations").is_dir()
    assert anim["seconds_per_frame"] < 0.5  # target 0.1 s on a quiet core; loose under parallel test load
    files, arrays = _npz(tmp_path / "a")
    assert len(files) == 2
    z = arrays[0]
    R, A, T = z["valid"].shape
    assert (R, T) == (2, 91) and z["xy"].shape == (R, A, T, 2) and z["xy"].dtype == np.float32
    assert z["origin_xy"].dtype == np.float64 and z["agent_id"].shape == (A,)
    # same seed, other worker count: identical arrays
    assert main(args + ["animate=0", "workers=2", f"out={tmp_path / 'b'}"]) == 0
    _, again = _npz(tmp_path / "b")
    for x, y in zip(arrays, again):
        assert np.array_equal(x["xy"], y["xy"]) and np.array_equal(x["valid"], y["valid"])


def test_womd_log_replay_through_the_cli(tmp_path, womd_path, capsys):
    out = tmp_path / "w"
    assert main([f"data=[{womd_path}]", "policy=log_replay", "rollouts=1", "animate=0", "workers=1",
                 "save_rollouts=false", f"out={out}"]) == 0
    agg = json.loads((out / "metrics.json").read_text())["aggregate"]
    assert agg["ade"] == 0.0 and agg["fde"] == 0.0 and agg["num_scenarios"] == 1


def test_learned_onnx_policy_through_the_cli(tmp_path, onnx_model):
    out = tmp_path / "l"
    assert main(["generate.num_scenes=1", "rollouts=2", "policy=learned", f"model={onnx_model}", "mode=sample",
                 "controlled=all", "animate=0", "workers=1", f"out={out}"]) == 0
    res = json.loads((out / "metrics.json").read_text())
    assert res["aggregate"]["num_rollouts"] == 2 and res["aggregate"]["ade"] is not None
    _, (z,) = _npz(out)
    assert not np.array_equal(z["xy"][0], z["xy"][1])  # sampled modes differ between the two worlds


def test_cli_errors(tmp_path, capsys):
    assert main([f"data=[{tmp_path / 'missing.tfrecord'}]", f"out={tmp_path / 'x'}"]) == 2
    assert "missing.tfrecord" in capsys.readouterr().err
    assert main(["policy=learned", "generate.num_scenes=1", "workers=1", f"out={tmp_path / 'y'}"]) == 2
    assert "model=PATH" in capsys.readouterr().err
    assert main(["no_such_key=1"]) == 2
    assert main(["policy=teleport", f"out={tmp_path / 'z'}"]) == 2
    assert "unknown policy 'teleport'" in capsys.readouterr().err
    assert main(["rollouts=0", f"out={tmp_path / 'z'}"]) == 2
    assert "rollouts must be >= 1" in capsys.readouterr().err


def test_bench_sim_runs(tmp_path, womd_path, onnx_model):
    from drope.bench.cli import main as bench

    out = tmp_path / "b.json"
    assert bench(["sim", "--womd", str(womd_path), "--seconds", "0.01", "--model", str(onnx_model), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["log_replay_agent_steps_per_s"] > 0 and res["onnx_predictions_per_rollout"] == 8
