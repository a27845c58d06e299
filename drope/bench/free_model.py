"""A hand-built ONNX model with the drope runtime contract that costs (almost) nothing to run.

Two uses: simulator tests that need the ONNX path without exporting a real model (~20 s), and
``drope-bench sim``'s ``learned_*_free_model`` keys, which time batched vs sequential learned
rollouts with the model's compute taken out: the engine's own (host) share of a replan, i.e.
the best batching can do where the forward pass is nearly free (a GPU, in compute terms)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def free_onnx_model(path: Path, num_modes: int = 3) -> Path:
    """Write the model to ``path``: every agent drives straight on from its last position at 5 m/s in
    scene x, mode k drifting k·0.5 m/s in y; mode probabilities fixed (0.5, 0.3, 0.2 for 3 modes,
    else proportional to K, K-1, ..., 1). Building it takes milliseconds."""
    import onnx
    from onnx import TensorProto, helper

    K, F, H, S = num_modes, 80, 11, 8
    f = np.arange(1, F + 1, dtype=np.float32) * 0.1
    # x, y, heading offsets [K, F, 3] (heading + 0): one broadcast Add writes the whole output
    off = np.stack([np.stack([5.0 * f, 0.5 * k * f, 0.0 * f], -1) for k in range(K)]).astype(np.float32)
    spec_in = {"agent_pos": ("float32", ["B", "A", H, 2]), "agent_heading": ("float32", ["B", "A", H]),
               "agent_vel": ("float32", ["B", "A", H, 2]), "agent_size": ("float32", ["B", "A", 3]),
               "agent_type": ("int64", ["B", "A"]), "agent_valid": ("bool", ["B", "A", H]),
               "map_points": ("float32", ["B", "M", S, 2]), "map_type": ("int64", ["B", "M"]),
               "map_signal": ("int64", ["B", "M"]), "map_mask": ("bool", ["B", "M"])}
    onnx_type = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "bool": TensorProto.BOOL}
    c = lambda name, arr: helper.make_tensor(name, onnx_type[str(arr.dtype)] if str(arr.dtype) in onnx_type else TensorProto.INT64,  # noqa: E731
                                               arr.shape, arr.flatten().tolist())
    w = np.arange(K, 0, -1, dtype=np.float32)
    probs = np.array([0.5, 0.3, 0.2], np.float32) if K == 3 else (w / w.sum()).astype(np.float32)
    inits = [c("last", np.array(-1, np.int64)), c("off", off), c("ax23", np.array([2, 3], np.int64)),
             c("ax2", np.array([2], np.int64)), c("zero", np.array(0.0, np.float32)), c("probs", probs)]
    nodes = [helper.make_node("Gather", ["agent_pos", "last"], ["p"], axis=2),  # [B, A, 2]
             helper.make_node("Gather", ["agent_heading", "last"], ["h"], axis=2),  # [B, A]
             helper.make_node("Unsqueeze", ["h", "ax2"], ["h3"]),  # [B, A, 1]
             helper.make_node("Concat", ["p", "h3"], ["pose"], axis=-1),  # [B, A, 3]
             helper.make_node("Unsqueeze", ["pose", "ax23"], ["pose5"]),  # [B, A, 1, 1, 3]
             helper.make_node("Add", ["pose5", "off"], ["traj"]),  # [B, A, K, F, 3]
             helper.make_node("Mul", ["h3", "zero"], ["z3"]), helper.make_node("Add", ["z3", "probs"], ["prob"])]
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
    onnx.save(model, str(path))
    return path
