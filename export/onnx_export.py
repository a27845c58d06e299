"""Export a trained DRoPE transformer to one ONNX file (dynamic batch, agents, map tokens).

The graph takes the raw scene-frame arrays of :meth:`drope.data.batch.SceneBatch.model_inputs`
and returns ``traj [B, A, K, F, 3]`` (x, y, heading in the scene frame; F = the model's
``features.future``) and ``prob [B, A, K]``; all feature engineering (agent and segment frames,
rotary angles) is inside the graph. Model config, feature spec (the model's
:class:`~drope.data.features.FeatureSpec` plus the input/output table), package version and
frequency schedule are stored as metadata.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

import drope
from drope.data.features import FeatureSpec
from drope.model import DRoPETransformer
from drope.model.checkpoint import scene_frame_outputs

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
INPUTS = list(FeatureSpec.input_names)
OUTPUTS = list(FeatureSpec.output_names)


class ExportWrapper(torch.nn.Module):
    """Model + agent-frame → scene-frame conversion + softmax: what the runtime serves."""

    def __init__(self, model: DRoPETransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, agent_pos, agent_heading, agent_vel, agent_size, agent_type, agent_valid, map_points, map_type,
                map_signal, map_mask):
        return scene_frame_outputs(self.model, agent_pos=agent_pos, agent_heading=agent_heading, agent_vel=agent_vel,
                                   agent_size=agent_size, agent_type=agent_type, agent_valid=agent_valid,
                                   map_points=map_points, map_type=map_type, map_signal=map_signal, map_mask=map_mask)


def feature_spec(model: DRoPETransformer) -> dict:
    """The ``feature_spec`` metadata: ``features`` (the model's FeatureSpec, what the runtime and the
    simulator preprocess with), the input/output table, and flat keys older readers use."""
    c, f = model.cfg, model.cfg.features
    return {
        "features": f.to_dict(),
        "input_names": list(f.input_names),
        "inputs": f.input_table(),
        "outputs": {
            "traj": {"dtype": "float32", "shape": ["B", "A", c.num_modes, f.future, 3],
                     "unit": "x, y m / heading rad, scene frame"},
            "prob": {"dtype": "float32", "shape": ["B", "A", c.num_modes]},
        },
        "num_modes": c.num_modes,
        # format-1 keys, read by runtimes and simulators written before "features"
        "history": f.history, "future": f.future, "map_points": f.segment_points, "dt": f.dt,
        "segment_max_len_m": f.segment_len,
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

    from drope.export.fp16 import to_fp16

    src = onnx.load(str(path))
    h = to_fp16(src)
    _copy_metadata(src, h, "fp16")
    onnx.save(h, str(out))
    return Path(out)


@dataclass
class Int8Config:
    """int8 dynamic quantisation choices (``int8:`` in configs/export/default.yaml)."""

    # MatMul/Gemm fed directly by raw geometric features stay fp32; see raw_feature_matmuls
    raw_feature_layers_fp32: bool = True
    # MatMul/Gemm whose result reaches a graph output directly stay fp32; see output_matmuls
    output_layers_fp32: bool = True
    per_channel: bool = False  # per-output-channel weight scales (measured: no better here)


_LEARNED_OPS = {"MatMul", "Gemm", "Conv", "LayerNormalization", "Attention"}


def _numel(t) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n


def _weight_names(graph) -> set[str]:
    """Learned tensors: float initializers with > 1 element (weights, embedding tables, norm scales, biases)."""
    import onnx

    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    return {t.name for t in graph.initializer if t.data_type in floats and _numel(t) > 1}


def raw_feature_matmuls(graph) -> list[str]:
    """MatMul/Gemm nodes whose activation input is computed from the graph inputs by weight-free ops.

    These are the first layers of the agent/map/size encoders: their inputs are metres, m/s and
    cos/sin side by side (on WOMD the agent features span −61…45 while lateral offsets and
    sin Δθ stay within ±0.35). Dynamic quantisation gives the whole activation tensor one uint8
    scale (0.42 m there), so the small features lose all resolution: quantising only
    ``agent_step_mlp.0`` moves WOMD minADE by −7.4 to +14.6 % on trained checkpoints, any other
    layer alone by ≤ 2.3 % (README, ONNX section). They have 3-8 input channels, so keeping them
    fp32 costs almost nothing.
    """
    weights = _weight_names(graph)
    const = {t.name for t in graph.initializer} | {""}  # "" = an omitted optional input
    raw = {i.name for i in graph.input}
    for n in graph.node:  # topological order (onnx.checker)
        if n.op_type in _LEARNED_OPS or any(i in weights for i in n.input):
            continue  # a learned layer: its output is no longer a raw feature
        if all(i in const for i in n.input):
            const.update(n.output)  # Constant, Shape arithmetic on constants
        elif all(i in raw or i in const for i in n.input):
            raw.update(n.output)
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.input and n.input[0] in raw
            and any(i in weights for i in n.input[1:])]


def output_matmuls(graph) -> list[str]:
    """MatMul/Gemm nodes whose result reaches a graph output without another learned layer in between.

    The last layers of the trajectory and mode heads: nothing downstream averages their rounding
    out, and the trajectory head's per-step displacements are summed over the future steps
    (``cumsum``), so its error grows along the horizon. Bias adds and output arithmetic
    (cumsum, scene-frame rotation, softmax) are passed through.
    """
    to_out = {o.name for o in graph.output}
    found = []
    for n in reversed(graph.node):  # reverse topological order
        if not any(o in to_out for o in n.output):
            continue
        if n.op_type in ("MatMul", "Gemm"):
            found.append(n.name)
        elif n.op_type not in _LEARNED_OPS:
            to_out.update(n.input)
    weights = _weight_names(graph)
    mm = {n.name: n for n in graph.node}
    return [n for n in reversed(found) if any(i in weights for i in mm[n].input[1:])]


def make_int8(path: str | Path, out: str | Path, cfg: Int8Config | None = None) -> Path:
    """Dynamic int8 quantisation of MatMul/Gemm (onnxruntime.quantization); raw-feature and output layers fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    cfg = cfg or Int8Config()
    src = onnx.load(str(path))
    keep = (raw_feature_matmuls(src.graph) if cfg.raw_feature_layers_fp32 else []) + \
        (output_matmuls(src.graph) if cfg.output_layers_fp32 else [])
    log.info("int8: keeping %d MatMul/Gemm in fp32: %s", len(keep), keep)
    quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                     nodes_to_exclude=keep, per_channel=cfg.per_channel)
    q = onnx.load(str(out))
    _copy_metadata(src, q, "int8")
    onnx.save(q, str(out))
    return Path(out)
