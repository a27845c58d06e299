"""The feature contract: what a model sees of a scene, defined once.

A :class:`FeatureSpec` fixes the history and future lengths (steps at ``dt`` seconds), the agent
and map caps, how map polylines become tokens (segment length and points) and the interaction
radii. Collation (:func:`drope.data.batch.collate_scenes`), scene graphs, the model
(``ModelConfig.features``, so every checkpoint carries it), the ONNX metadata and the torch-free
runtime all read it; none holds its own copy. Datasets differ in it: a WOMD model sees 11 steps
and predicts 80, an Argoverse 2 model sees 50 and predicts 60 (:data:`DATASET_FEATURES`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from drope.registry import Registry

# The model's plain-tensor inputs, in the order of ``DRoPETransformer.forward`` and the ONNX graph.
INPUT_NAMES: tuple[str, ...] = ("agent_pos", "agent_heading", "agent_vel", "agent_size", "agent_type", "agent_valid",
                                "map_points", "map_type", "map_signal", "map_mask")
OUTPUT_NAMES: tuple[str, ...] = ("traj", "prob")


@dataclass(frozen=True)
class FeatureSpec:
    """History/future steps, caps, map tokenisation and radii (``features:`` in configs/model/*.yaml).

    The defaults are WOMD's (10 Hz, 11 history steps ending at the current one, 80 future).
    ``max_agents``/``max_map`` ``None`` keeps every agent/segment of a scene; a cap keeps those
    nearest the SDC.
    """

    history: int = 11  # steps ending at (and including) the current step
    future: int = 80  # steps after the current step
    dt: float = 0.1  # seconds per step
    max_agents: int | None = None
    max_map: int | None = None
    segment_len: float = 20.0  # metres: map polylines are cut into equal pieces no longer than this
    segment_points: int = 8  # points per map segment, evenly spaced by arc length
    a2a_radius: float = 60.0  # metres; agents farther apart do not attend to each other
    m2a_radius: float = 50.0  # map segment → agent
    m2m_radius: float = 40.0  # map segment → map segment

    input_names: ClassVar[tuple[str, ...]] = INPUT_NAMES
    output_names: ClassVar[tuple[str, ...]] = OUTPUT_NAMES

    def __post_init__(self) -> None:
        for name in ("history", "future", "segment_points"):
            _check_int(name, getattr(self, name), 2 if name == "segment_points" else 1)
        for name in ("max_agents", "max_map"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        for name in ("dt", "segment_len", "a2a_radius", "m2a_radius", "m2m_radius"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or not v > 0:
                raise ValueError(f"features.{name}: must be a number > 0, got {v!r}")
            if name in ("dt", "segment_len") and not math.isfinite(v):
                raise ValueError(f"features.{name}: must be finite, got {v!r}")
            object.__setattr__(self, name, float(v))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "features") -> "FeatureSpec":
        """From a yaml/checkpoint/metadata dict; unknown keys and bad values name ``where.key``."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a mapping of feature settings, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**d)
        except ValueError as e:
            raise ValueError(str(e).replace("features.", f"{where}.", 1)) from None

    def input_table(self) -> dict[str, dict]:
        """Per input, in :attr:`input_names` order: dtype, shape (``B``/``A``/``M`` dynamic; history
        and segment points fixed), unit, and ``time_axis`` for the inputs that carry the history."""
        f, H, S = "float32", self.history, self.segment_points
        table = {
            "agent_pos": {"dtype": f, "shape": ["B", "A", H, 2], "unit": "m, scene frame", "time_axis": 2},
            "agent_heading": {"dtype": f, "shape": ["B", "A", H], "unit": "rad, scene frame", "time_axis": 2},
            "agent_vel": {"dtype": f, "shape": ["B", "A", H, 2], "unit": "m/s, scene frame", "time_axis": 2},
            "agent_size": {"dtype": f, "shape": ["B", "A", 3], "unit": "m (length, width, height)"},
            "agent_type": {"dtype": "int64", "shape": ["B", "A"], "unit": "WOMD ObjectType"},
            "agent_valid": {"dtype": "bool", "shape": ["B", "A", H], "time_axis": 2},
            "map_points": {"dtype": f, "shape": ["B", "M", S, 2], "unit": "m, scene frame"},
            "map_type": {"dtype": "int64", "shape": ["B", "M"], "unit": "drope MapType"},
            "map_signal": {"dtype": "int64", "shape": ["B", "M"], "unit": "WOMD SignalState"},
            "map_mask": {"dtype": "bool", "shape": ["B", "M"]},
        }
        return {k: table[k] for k in self.input_names}


def _check_int(name: str, v, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"features.{name}: must be an int >= {lo}, got {v!r}")


DATASET_FEATURES: Registry[FeatureSpec] = Registry("dataset features")
DATASET_FEATURES.register("womd")(FeatureSpec())
# AV2 motion forecasting: 5 s observed (50 steps, current index 49), 6 s predicted, 10 Hz
DATASET_FEATURES.register("av2")(FeatureSpec(history=50, future=60))
# generated scenes (drope.sim.generate) are laid out like WOMD: 91 steps, current index 10
DATASET_FEATURES.register("drope-sim")(FeatureSpec())


def features_for_data(scenes) -> FeatureSpec:
    """The feature spec of the dataset ``scenes`` come from (by ``Scene.source``, e.g. ``"av2"``);
    mixing datasets or an unregistered source is a ``ValueError`` naming them."""
    sources = sorted({s.source.split("/")[0] for s in scenes})
    if len(sources) != 1:
        raise ValueError(f"features_for_data: need scenes of one dataset, got sources {sources}")
    try:
        return DATASET_FEATURES.get(sources[0])
    except KeyError as e:
        raise ValueError(str(e).strip("'\"")) from None
