"""Torch-free inference: ``OnnxPredictor(path).predict(inputs)`` with numpy and onnxruntime only.

This module must not import torch or drope (a test runs it in a subprocess and checks
``sys.modules``). World coordinates are re-centred in float64 on the host before anything
becomes float32 (:meth:`OnnxPredictor.predict_world`).

The model's feature contract comes from the file's metadata (``OnnxPredictor.features``: history
and future steps, segment length and points, radii; the FeatureSpec it was trained with), so one
runtime serves a WOMD model (11 history, 80 future steps) and an Argoverse 2 model (50, 60) alike:
:meth:`OnnxPredictor.history_window` cuts full-length tracks to the model's history.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUPPORTED_FORMAT_VERSIONS = {1}
_DTYPES = {"float32": np.float32, "int64": np.int64, "bool": np.bool_}


class ModelFormatError(ValueError):
    """The ONNX file is not a drope model this runtime can serve."""


class InputError(ValueError):
    """An input array has the wrong name, dtype, shape or values."""


@dataclass
class Prediction:
    traj: np.ndarray  # [B, A, K, F, 3] x, y (m), heading (rad) in the input frame
    prob: np.ndarray  # [B, A, K]


def check_providers(providers: list[str]) -> None:
    """Refuse execution providers this onnxruntime build lacks (ONNX Runtime itself would only warn
    and fall back to the CPU)."""
    import onnxruntime as ort

    missing = [x for x in providers if x not in ort.get_available_providers()]
    if missing:
        raise ValueError(f"ONNX Runtime execution provider(s) {missing} not available in this onnxruntime build "
                         f"(available: {ort.get_available_providers()}; CUDA needs the onnxruntime-gpu package)")


class OnnxPredictor:
    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such model file: {self.path}")
        providers = list(providers or ["CPUExecutionProvider"])
        try:
            check_providers(providers)
        except ValueError as e:
            raise ValueError(f"{self.path}: {e}") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for broken files
            raise ModelFormatError(f"{self.path}: cannot load as ONNX: {e}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            version = int(meta["drope_format_version"])
            self.spec = json.loads(meta["feature_spec"])
            self.model_config = json.loads(meta["model_config"])
        except (KeyError, ValueError) as e:
            raise ModelFormatError(f"{self.path}: missing or broken drope metadata ({e}); not a drope export?") from None
        if version not in SUPPORTED_FORMAT_VERSIONS:
            raise ModelFormatError(f"{self.path}: drope format version {version} is not supported by this runtime "
                                   f"(supported: {sorted(SUPPORTED_FORMAT_VERSIONS)})")
        self.features = _features(self.path, self.spec)
        self.input_names = list(self.spec.get("input_names") or self.spec["inputs"])
        self.metadata = dict(meta)

    # ---- checks --------------------------------------------------------------------------------------
    def _check(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.spec["inputs"]
        missing, extra = set(spec) - set(inputs), set(inputs) - set(spec)
        if missing or extra:
            raise InputError(f"inputs: missing {sorted(missing)}, unexpected {sorted(extra)}")
        sizes: dict[str, int] = {}
        out = {}
        for name, s in spec.items():
            a = np.asarray(inputs[name])
            want = _DTYPES[s["dtype"]]
            if a.dtype != want:
                if want == np.float32 and a.dtype.kind == "f":
                    a = a.astype(np.float32)
                elif want == np.int64 and a.dtype.kind in "iu":
                    a = a.astype(np.int64)
                else:
                    raise InputError(f"input {name}: dtype {a.dtype}, expected {s['dtype']}")
            if a.ndim != len(s["shape"]):
                raise InputError(f"input {name}: shape {a.shape}, expected {s['shape']}")
            for sym, n in zip(s["shape"], a.shape):
                if isinstance(sym, int) and n != sym:
                    raise InputError(f"input {name}: shape {a.shape}, expected {s['shape']}")
                if isinstance(sym, str) and sizes.setdefault(sym, n) != n:
                    raise InputError(f"input {name}: dimension {sym}={n} disagrees with {sizes[sym]} of earlier inputs")
            if a.dtype == np.float32 and not np.isfinite(a).all():
                raise InputError(f"input {name}: holds NaN/Inf")
            out[name] = np.ascontiguousarray(a)
        if sizes.get("A", 0) < 2 or sizes.get("M", 0) < 2:
            raise InputError(f"need at least 2 agent and 2 map slots (pad with masked entries), got {sizes}")
        return out

    # ---- preprocessing ---------------------------------------------------------------------------------
    def history_window(self, inputs: dict[str, np.ndarray], current_index: int) -> dict[str, np.ndarray]:
        """Inputs whose agent arrays hold whole tracks ``[B, A, T, ...]`` → the model's history
        window: the ``features["history"]`` steps ending at ``current_index`` (other inputs pass through)."""
        H = int(self.features["history"])
        if not H - 1 <= current_index:
            raise InputError(f"current_index {current_index} leaves fewer than the model's {H} history steps")
        out = dict(inputs)
        for name, s in self.spec["inputs"].items():
            axis = s.get("time_axis")
            if axis is None or name not in inputs:
                continue
            a = np.asarray(inputs[name])
            if a.ndim <= axis or a.shape[axis] <= current_index:
                raise InputError(f"input {name}: shape {a.shape} has no step {current_index} on axis {axis}")
            out[name] = np.take(a, np.arange(current_index + 1 - H, current_index + 1), axis=axis)
        return out

    # ---- inference ------------------------------------------------------------------------------------
    def predict(self, inputs: dict[str, np.ndarray]) -> Prediction:
        """Scene-frame inputs (see ``self.spec``) → scene-frame trajectories and mode probabilities."""
        feed = self._check(inputs)
        traj, prob = self.session.run(["traj", "prob"], {k: feed[k] for k in self.input_names})
        if traj.shape[3] != int(self.features["future"]):
            raise ModelFormatError(f"{self.path}: the graph predicts {traj.shape[3]} steps, its metadata says "
                                   f"features.future = {self.features['future']}")
        return Prediction(traj, prob)

    def predict_world(self, inputs: dict[str, np.ndarray], origin_xy: np.ndarray, origin_heading: float = 0.0) -> Prediction:
        """Like :meth:`predict` but positions/velocities/headings are WORLD coordinates (any float type).

        Re-centres in float64 on the host (float32 at WOMD's ±8 km would lose ~0.5 mm and rotary
        logits would degrade), runs the model, and maps the trajectories back to float64 world
        coordinates.
        """
        o = np.asarray(origin_xy, np.float64)
        c, s = math.cos(origin_heading), math.sin(origin_heading)
        rot = np.array([[c, s], [-s, c]])  # world → frame
        local = dict(inputs)
        for k in ("agent_pos", "map_points"):
            local[k] = ((np.asarray(inputs[k], np.float64) - o) @ rot.T).astype(np.float32)
        local["agent_vel"] = (np.asarray(inputs["agent_vel"], np.float64) @ rot.T).astype(np.float32)
        h = np.asarray(inputs["agent_heading"], np.float64) - origin_heading
        # drope.geometry.wrap_angle's rule, written out: the runtime must not import torch (tested)
        local["agent_heading"] = ((h + math.pi) % (2 * math.pi) - math.pi).astype(np.float32)
        pred = self.predict(local)
        xy = pred.traj[..., :2].astype(np.float64) @ rot + o
        hw = pred.traj[..., 2].astype(np.float64) + origin_heading
        hw = (hw + math.pi) % (2 * math.pi) - math.pi
        return Prediction(np.concatenate([xy, hw[..., None]], -1), pred.prob)


def _features(path: Path, spec: dict) -> dict:
    """The model's FeatureSpec as a dict; files from before ``features`` give what their flat keys hold."""
    if "features" in spec:
        f = spec["features"]
    else:
        f = {"history": spec.get("history"), "future": spec.get("future"), "dt": spec.get("dt"),
             "segment_points": spec.get("map_points"), "segment_len": spec.get("segment_max_len_m")}
    if not isinstance(f, dict):
        raise ModelFormatError(f"{path}: feature_spec.features is not a mapping; not a drope export?")
    bad = [k for k in ("history", "future", "segment_points") if not isinstance(f.get(k), int) or f[k] < 1]
    if bad or "inputs" not in spec:
        raise ModelFormatError(f"{path}: feature_spec metadata lacks valid {bad or ['inputs']}; not a drope export?")
    return dict(f)
