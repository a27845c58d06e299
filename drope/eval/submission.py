"""Challenge submissions written while drope-eval streams, never held whole in memory.

:class:`SubmissionSink` picks the format from the scenes' source through :data:`SUBMISSION_FORMATS`
(WOMD and generated scenes: ``MotionChallengeSubmission``; AV2: the ``ChallengeSubmission`` parquet of
:mod:`drope.metrics.av2_submission`) and refuses a file name of another format.

WOMD (:class:`MotionSubmissionWriter`): protobuf parses concatenated messages as one merged message (repeated fields appended), so the file
is the header (metadata) followed by chunks that hold only ``scenario_predictions``; each chunk is
built by :func:`drope.metrics.submission.write_motion_submission`, so the format has one definition.
The file appears under its name only when :meth:`MotionSubmissionWriter.close` succeeds.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from drope.metrics.submission import SubmissionMetadata, write_motion_submission
from drope.registry import Registry


class MotionSubmissionWriter:
    def __init__(self, path: str | Path, metadata: SubmissionMetadata, chunk: int = 64) -> None:
        from waymo_open_dataset.protos import motion_submission_pb2

        self._ms = motion_submission_pb2
        self.path, self.metadata, self.chunk = Path(path), metadata, chunk
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._f = open(self._partial, "wb")
        header = self._ms.MotionChallengeSubmission(
            submission_type=self._ms.MotionChallengeSubmission.MOTION_PREDICTION, **metadata.fields())
        self._f.write(header.SerializeToString())
        self._scenes: list = []
        self._preds: list = []
        self.count = 0

    def add(self, scene, agent_index, pred_xy, pred_prob) -> None:
        """One scene's predictions, as :func:`write_motion_submission` takes them."""
        self._scenes.append(scene)
        self._preds.append((agent_index, pred_xy, pred_prob))
        if len(self._scenes) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._scenes:
            return
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d) / "chunk.binproto"
            write_motion_submission(tmp, self._scenes, self._preds, self.metadata)
            parsed = self._ms.MotionChallengeSubmission.FromString(tmp.read_bytes())
        part = self._ms.MotionChallengeSubmission()
        part.scenario_predictions.extend(parsed.scenario_predictions)
        self._f.write(part.SerializeToString())
        self.count += len(self._scenes)
        self._scenes, self._preds = [], []

    def close(self) -> int:
        """Finish the file; returns the number of scenarios."""
        self._flush()
        self._f.close()
        self._partial.replace(self.path)
        return self.count

    def abort(self) -> None:
        """Drop what was written (an invalid submission must not be left behind)."""
        self._f.close()
        self._partial.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# per-dataset submission formats, chosen by the scenes' source
# --------------------------------------------------------------------------------------------------
def check_complete(p) -> None:
    """Every track to predict must carry a prediction, or the submission is not valid."""
    s = p.scene
    missing = sorted(set(s.tracks_to_predict.tolist()) - set(p.agent_index.tolist()))
    if missing:
        ids = [int(s.agent_id[a]) for a in missing]
        raise ValueError(f"scenario {s.scenario_id}: tracks to predict {ids} have no prediction (dropped by "
                         f"--max-agents or not valid at the current step); a submission needs all of them")


class _WomdSubmission:
    """drope-eval's predictions as a MotionChallengeSubmission (every track to predict)."""

    def __init__(self, path: Path, metadata: SubmissionMetadata) -> None:
        self._w = MotionSubmissionWriter(path, metadata)

    def add(self, p) -> None:
        from drope.eval.metric_sets import womd_fit

        if (why := womd_fit(p.scene, p.gt.shape[1])) is not None:
            raise ValueError(f"cannot write a MotionChallengeSubmission: {why}")
        check_complete(p)
        self._w.add(p.scene, p.agent_index, p.xy["drope"], p.prob["drope"])

    def close(self) -> int:
        return self._w.close()

    def abort(self) -> None:
        self._w.abort()


class _Av2Submission:
    """drope-eval's predictions as an AV2 ChallengeSubmission: the focal track of each scenario (the
    single-agent challenge; av2's reader keeps one probability vector per scenario, and the model's
    probabilities differ per track), K modes in AV2 city coordinates, probabilities summing to 1."""

    def __init__(self, path: Path, metadata: SubmissionMetadata) -> None:
        from drope.metrics.av2_submission import Av2SubmissionWriter

        self._w = Av2SubmissionWriter(path)
        self.count = 0

    def add(self, p) -> None:
        from drope.data.av2 import av2_track_id
        from drope.eval.metric_sets import av2_fit
        from drope.metrics.av2_submission import Av2TrackPrediction

        s = p.scene
        if (why := av2_fit(s, p.gt.shape[1])) is not None:
            raise ValueError(f"cannot write an AV2 ChallengeSubmission: {why}")
        check_complete(p)
        focal = [r for r, a in enumerate(p.agent_index.tolist()) if int(s.agent_id[a]) in set(s.objects_of_interest.tolist())]
        if len(focal) != 1:
            raise ValueError(f"scenario {s.scenario_id}: {len(focal)} focal tracks among the predictions, expected 1 "
                             "(the AV2 focal track is the scene's object of interest)")
        r = focal[0]
        self._w.add(Av2TrackPrediction(s.scenario_id, av2_track_id(int(s.agent_id[p.agent_index[r]])),
                                       s.to_world_xy(p.xy["drope"][r]), p.prob["drope"][r].numpy()))
        self.count += 1

    def close(self) -> int:
        self._w.close()
        return self.count

    def abort(self) -> None:
        self._w.abort()


@dataclass(frozen=True)
class SubmissionFormat:
    """What ``--submission FILE`` writes for one dataset: ``suffixes`` the file must end with (empty:
    any name no other format claims), ``open(path, metadata)`` a writer with ``add(ScenePredictions)``,
    ``close() -> scenarios`` and ``abort()``."""

    name: str
    what: str
    suffixes: tuple[str, ...]
    open: Callable[[Path, SubmissionMetadata], object]


SUBMISSION_FORMATS: Registry[SubmissionFormat] = Registry("submission format")
WOMD_SUBMISSION = SUBMISSION_FORMATS.register("womd")(
    SubmissionFormat("womd", "a WOMD MotionChallengeSubmission binproto", (), _WomdSubmission))
SUBMISSION_FORMATS.register("drope-sim")(WOMD_SUBMISSION)  # generated scenes are WOMD-format
SUBMISSION_FORMATS.register("av2")(
    SubmissionFormat("av2", "an Argoverse 2 ChallengeSubmission parquet", (".parquet",), _Av2Submission))


def submission_format_for(source: str) -> SubmissionFormat:
    """The format registered for ``source`` or its prefix before ``/``; a clear error if none."""
    for name in (source, source.split("/", 1)[0]):
        if name in SUBMISSION_FORMATS:
            return SUBMISSION_FORMATS.get(name)
    raise ValueError(f"no submission format for scenes of source {source!r} "
                     f"(known: {', '.join(SUBMISSION_FORMATS.names())})")


def _check_path(fmt: SubmissionFormat, path: Path, scene) -> None:
    claimed = {s: SUBMISSION_FORMATS.get(n) for n in SUBMISSION_FORMATS for s in SUBMISSION_FORMATS.get(n).suffixes}
    suffix = path.suffix.lower()
    ok = suffix in fmt.suffixes if fmt.suffixes else suffix not in claimed
    if not ok:
        want = (f"a name ending in {' or '.join(fmt.suffixes)}" if fmt.suffixes
                else f"a name not ending in {' or '.join(sorted(claimed))} (that is {claimed[suffix].what})")
        raise ValueError(f"--submission {path}: the scenes are {fmt.name} (scene {scene.scenario_id}, source "
                         f"{scene.source!r}), whose submission is {fmt.what}; give {want}")


class SubmissionSink:
    """``--submission FILE`` for drope-eval: the format is chosen by the first scene's source
    (:data:`SUBMISSION_FORMATS`), checked against the file name, and written while streaming; scenes
    of another format later in the run are an error (one file holds one challenge's table)."""

    def __init__(self, path: str | Path, metadata: SubmissionMetadata) -> None:
        self.path, self.metadata = Path(path), metadata
        self.format: SubmissionFormat | None = None
        self._w = None

    def add(self, p) -> None:
        fmt = submission_format_for(p.scene.source)
        if self.format is None:
            _check_path(fmt, self.path, p.scene)
            self.format, self._w = fmt, fmt.open(self.path, self.metadata)
        elif fmt.name != self.format.name:
            raise ValueError(f"--submission {self.path}: scene {p.scene.scenario_id} is {fmt.name} "
                             f"(source {p.scene.source!r}) but earlier scenes were {self.format.name}; "
                             "one submission holds one dataset")
        self._w.add(p)

    def close(self) -> int:
        """Finish the file; the number of scenarios written (0 and no file when no scene was read)."""
        return self._w.close() if self._w is not None else 0

    def abort(self) -> None:
        if self._w is not None:
            self._w.abort()
