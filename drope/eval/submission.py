"""A ``MotionChallengeSubmission`` written while drope-eval streams, never held whole in memory.

Protobuf parses concatenated messages as one merged message (repeated fields appended), so the file
is the header (metadata) followed by chunks that hold only ``scenario_predictions``; each chunk is
built by :func:`drope.metrics.submission.write_motion_submission`, so the format has one definition.
The file appears under its name only when :meth:`MotionSubmissionWriter.close` succeeds.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from drope.metrics.submission import SubmissionMetadata, write_motion_submission


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
