"""Export a trained DRoPE transformer to one ONNX file (dynamic batch, agents, map tokens).

The graph takes the raw scene-frame arrays of :meth:`drope.data.batch.SceneBatch.model_inputs`
and returns ``traj [B, A, K, 80, 3]`` (x, y, heading in the scene frame) and ``prob [B, A, K]``;
all feature engineering (agent and segment frames, rotary angles) is inside the graph. Model
config, feature spec, package version and frequency schedule are stored as metadata.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

import drope
from drope.model import DRoPETransformer, to_scene_frame

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
INPUTS = ["agent_pos", "agent_heading", "agent_vel", "agent_size", "agent_type", "agent_valid",
          "map_points", "map_type", "map_signal", "map_mask"]
OUTPUTS = ["traj", "prob"]


class ExportWrapper(torch.nn.Module):
    """Model + agent-frame → scene-frame conversion + softmax: what the runtime serves."""

    def __init__(self, model: DRoPETransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, agent_pos, agent_heading, agent_vel, agent_size, agent_type, agent_valid, map_points, map_type,
                map_signal, map_mask):
        traj, _, logits = self.model(agent_pos, agent_heading, agent_vel, agent_size, agent_type, agent_valid,
                                     map_points, map_type, map_signal, map_mask)
        return to_scene_frame(traj, agent_pos[:, :, -1], agent_heading[:, :, -1]), logits.softmax(-1)


def feature_spec(model: DRoPETransformer) -> dict:
    c = model.cfg
    f = "float32"
    return {
        "inputs": {
            "agent_pos": {"dtype": f, "shape": ["B", "A", c.history, 2], "unit": "m, scene frame"},
            "agent_heading": {"dtype": f, "shape": ["B", "A", c.history], "unit": "rad, scene frame"},
            "agent_vel": {"dtype": f, "shape": ["B", "A", c.history, 2], "unit": "m/s, scene frame"},
            "agent_size": {"dtype": f, "shape": ["B", "A", 3], "unit": "m (length, width, height)"},
            "agent_type": {"dtype": "int64", "shape": ["B", "A"], "unit": "WOMD ObjectType"},
            "agent_valid": {"dtype": "bool", "shape": ["B", "A", c.history]},
            "map_points": {"dtype": f, "shape": ["B", "M", c.map_points, 2], "unit": "m, scene frame"},
            "map_type": {"dtype": "int64", "shape": ["B", "M"], "unit": "drope MapType"},
            "map_signal": {"dtype": "int64", "shape": ["B", "M"], "unit": "WOMD SignalState"},
            "map_mask": {"dtype": "bool", "shape": ["B", "M"]},
        },
        "outputs": {
            "traj": {"dtype": f, "shape": ["B", "A", c.num_modes, c.future, 3], "unit": "x, y m / heading rad, scene frame"},
            "prob": {"dtype": f, "shape": ["B", "A", c.num_modes]},
        },
        "history": c.history, "future": c.future, "num_modes": c.num_modes, "map_points": c.map_points,
        "dt": 0.1, "segment_max_len_m": 20.0,
    }


def export_onnx(model: DRoPETransformer, example: dict[str, torch.Tensor], path: str | Path, opset: int = 23,
                extra_metadata: dict | None = None) -> Path:
    """Export with dynamic B, A, M; writes metadata and runs ``onnx.checker``."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model.eval()).eval()
    B = torch.export.Dim("batch", min=1, max=1024)
    A = torch.export.Dim("agents", min=2, max=8192)
    M = torch.export.Dim("map", min=2, max=65536)
    dyn = {k: ({0: B, 1: A} if k.startswith("agent") else {0: B, 1: M}) for k in INPUTS}
    args = tuple(example[k] for k in INPUTS)
    with torch.no_grad():
        prog = torch.onnx.export(wrapper, args, dynamo=True, opset_version=opset, dynamic_shapes=dyn,
                                 input_names=INPUTS, output_names=OUTPUTS)
    prog.save(str(path))
    m = onnx.load(str(path))
    meta = {
        "drope_version": drope.__version__,
        "drope_format_version": str(FORMAT_VERSION),
        "model_config": json.dumps(model.cfg.to_dict()),
        "feature_spec": json.dumps(feature_spec(model)),
        "frequency_schedule": json.dumps(model.m2a[0].attn.encoding.describe()),
    }
    meta.update({k: json.dumps(v) if not isinstance(v, str) else v for k, v in (extra_metadata or {}).items()})
    for n in m.graph.node:  # per-node exporter metadata: stack traces name this machine's paths, and
        # all of it together was a third of the file; the module scope is kept for profiling
        keep = [p for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes"]
        del n.metadata_props[:]
        n.metadata_props.extend(keep)
    del m.metadata_props[:]
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def _copy_metadata(src, dst, variant: str) -> None:
    del dst.metadata_props[:]
    for p in src.metadata_props:
        q = dst.metadata_props.add()
        q.key, q.value = p.key, p.value
    q = dst.metadata_props.add()
    q.key, q.value = "variant", variant


def make_fp16(path: str | Path, out: str | Path) -> Path:
    """fp16 weights and fp16 MLP/projection islands; pose math, attention and I/O stay fp32 (:mod:`export.fp16`)."""
    import onnx

    from export.fp16 import to_fp16

    src = onnx.load(str(path))
    h = to_fp16(src)
    _copy_metadata(src, h, "fp16")
    onnx.save(h, str(out))
    return Path(out)


def make_int8(path: str | Path, out: str | Path) -> Path:
    """Dynamic int8 quantisation of MatMul/Gemm weights (onnxruntime.quantization)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    src, q = onnx.load(str(path)), onnx.load(str(out))
    _copy_metadata(src, q, "int8")
    onnx.save(q, str(out))
    return Path(out)
