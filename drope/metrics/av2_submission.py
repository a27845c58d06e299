"""Argoverse 2 motion-forecasting challenge submissions: the ``ChallengeSubmission`` parquet table.

One row per (scenario, track, predicted trajectory) with the columns of av2's
``av2.datasets.motion_forecasting.eval.submission.SUBMISSION_COL_NAMES``:

  scenario_id (string), track_id (string), probability (double),
  predicted_trajectory_x, predicted_trajectory_y (list<double>, 60 future steps, city frame)

av2's reader (``ChallengeSubmission.from_parquet``) sorts all rows by probability and keeps *one*
probability vector per scenario (the multi-agent challenge's joint "worlds"), taken from the last
track it groups. A scenario with several tracks is therefore only read correctly when every track
carries the same probabilities: :func:`write_av2_submission` refuses anything else (the
single-agent challenge submits the focal track alone). Probabilities are normalised to sum to 1
per track (av2 rejects a scenario whose probabilities do not).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "AV2_PRED_STEPS",
    "Av2SubmissionWriter",
    "Av2TrackPrediction",
    "SUBMISSION_COLUMNS",
    "read_av2_submission",
    "write_av2_submission",
]

AV2_PRED_STEPS = 60
SUBMISSION_COLUMNS = ("scenario_id", "track_id", "probability", "predicted_trajectory_x", "predicted_trajectory_y")


@dataclass(frozen=True)
class Av2TrackPrediction:
    """K predicted futures of one track: ``trajectories`` [K, 60, 2] (AV2 city coordinates, e.g.
    ``scene.to_world_xy`` of scene-frame predictions), ``probabilities`` [K]; the track id is AV2's
    string (``drope.data.av2.av2_track_id``)."""

    scenario_id: str
    track_id: str
    trajectories: np.ndarray
    probabilities: np.ndarray


def _as_prediction(row) -> Av2TrackPrediction:
    if isinstance(row, Av2TrackPrediction):
        return row
    sid, tid, traj, prob = row
    return Av2TrackPrediction(str(sid), str(tid), traj, prob)


def _checked(row: Av2TrackPrediction) -> tuple[np.ndarray, np.ndarray]:
    where = f"scenario {row.scenario_id} track {row.track_id}"
    traj = np.asarray(row.trajectories.detach().cpu() if hasattr(row.trajectories, "detach") else row.trajectories,
                      np.float64)
    prob = np.asarray(row.probabilities.detach().cpu() if hasattr(row.probabilities, "detach") else row.probabilities,
                      np.float64)
    if traj.ndim != 3 or traj.shape[1:] != (AV2_PRED_STEPS, 2) or len(traj) == 0:
        raise ValueError(f"{where}: trajectories have shape {traj.shape}, expected [K >= 1, {AV2_PRED_STEPS}, 2]")
    if prob.shape != (len(traj),):
        raise ValueError(f"{where}: {len(traj)} trajectories but probabilities of shape {prob.shape}")
    if not np.isfinite(traj).all():
        raise ValueError(f"{where}: trajectories hold NaN/Inf")
    if not np.isfinite(prob).all() or (prob < 0).any() or prob.sum() <= 0:
        raise ValueError(f"{where}: probabilities {prob.tolist()} must be finite, >= 0 and not all 0")
    return traj, prob / prob.sum()


class Av2SubmissionWriter:
    """Writes the ``ChallengeSubmission`` parquet a chunk of rows at a time (one row group per
    ``chunk`` tracks), so memory holds one chunk, not the submission. A scenario's tracks come one
    after another (as drope-eval yields them): the duplicate / shared-probability checks then need
    only the current scenario and the ids of finished ones. The file appears under its name only
    when :meth:`close` succeeds; :meth:`abort` drops it."""

    def __init__(self, path: str | Path, chunk: int = 256) -> None:
        import pyarrow as pa

        self.path, self.chunk = Path(path), chunk
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._schema = pa.schema([
            ("scenario_id", pa.string()), ("track_id", pa.string()), ("probability", pa.float64()),
            ("predicted_trajectory_x", pa.list_(pa.float64())), ("predicted_trajectory_y", pa.list_(pa.float64())),
        ])
        self._writer = None
        self._cols: dict[str, list] = {c: [] for c in SUBMISSION_COLUMNS}
        self._pending = 0
        self._done: set[str] = set()  # scenarios whose tracks are all written
        self._current: tuple[str, str, np.ndarray, set[str]] | None = None  # scenario, first track, probs, tracks
        self.rows = 0

    def add(self, row: Av2TrackPrediction | Sequence) -> None:
        """One track's K predictions (:class:`Av2TrackPrediction` or ``(scenario_id, track_id,
        trajectories, probabilities)``); probabilities are normalised to sum to 1."""
        row = _as_prediction(row)
        traj, prob = _checked(row)
        sid = row.scenario_id
        if self._current is None or self._current[0] != sid:
            if sid in self._done:
                raise ValueError(f"scenario {sid}: its tracks must follow one another (it came before scenario "
                                 f"{self._current[0]})")
            if self._current is not None:
                self._done.add(self._current[0])
            self._current = (sid, row.track_id, prob, set())
        _, first, first_prob, tracks = self._current
        if row.track_id in tracks:
            raise ValueError(f"scenario {sid} track {row.track_id} is predicted twice")
        tracks.add(row.track_id)
        if len(first_prob) != len(prob) or not np.allclose(first_prob, prob, atol=1e-9):
            raise ValueError(
                f"scenario {sid}: tracks {first} and {row.track_id} have different probabilities; "
                "av2's reader keeps one probability vector per scenario, so every track of a scenario must share it"
            )
        for k in range(len(traj)):
            self._cols["scenario_id"].append(row.scenario_id)
            self._cols["track_id"].append(row.track_id)
            self._cols["probability"].append(float(prob[k]))
            self._cols["predicted_trajectory_x"].append(traj[k, :, 0].tolist())
            self._cols["predicted_trajectory_y"].append(traj[k, :, 1].tolist())
        self._pending += 1
        if self._pending >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(self._partial, self._schema)
        if not self._cols["scenario_id"]:
            return
        self._writer.write_table(pa.table(self._cols, schema=self._schema))
        self.rows += len(self._cols["scenario_id"])
        self._cols = {c: [] for c in SUBMISSION_COLUMNS}
        self._pending = 0

    def close(self) -> int:
        """Finish the file; returns the number of table rows."""
        self._flush()
        self._writer.close()
        self._partial.replace(self.path)
        return self.rows

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._partial.unlink(missing_ok=True)


def write_av2_submission(path: str | Path, rows: Iterable[Av2TrackPrediction | Sequence]) -> int:
    """Write the ``ChallengeSubmission`` parquet (:class:`Av2SubmissionWriter`); ``rows`` are
    :class:`Av2TrackPrediction` or ``(scenario_id, track_id, trajectories, probabilities)`` tuples, a
    scenario's tracks one after another. Returns the number of table rows."""
    w = Av2SubmissionWriter(path)
    try:
        for row in rows:
            w.add(row)
    except BaseException:
        w.abort()
        raise
    return w.close()


def read_av2_submission(path: str | Path) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """A submission parquet as ``{scenario_id: (probabilities [K], {track_id: trajectories [K, 60, 2]})}``,
    each track's predictions in descending probability order, like av2's ``from_parquet`` (ties keep
    file order). Raises ValueError naming the file for a non-parquet file, missing columns or bad rows."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        names = pq.read_schema(path).names
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError flavours for non-parquet files
        raise ValueError(f"{path}: not a readable parquet file ({e})") from None
    missing = [c for c in SUBMISSION_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{path}: AV2 submission is missing column(s) {', '.join(missing)}")
    t = pq.read_table(path, columns=list(SUBMISSION_COLUMNS)).to_pydict()
    groups: dict[str, dict[str, list[int]]] = {}
    for i, (sid, tid) in enumerate(zip(t["scenario_id"], t["track_id"])):
        groups.setdefault(str(sid), {}).setdefault(str(tid), []).append(i)
    prob_all = np.asarray(t["probability"], np.float64)
    out: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    for sid, tracks in groups.items():
        trajs: dict[str, np.ndarray] = {}
        probs = None
        for tid, idx in tracks.items():
            idx = [idx[j] for j in np.argsort(-prob_all[idx], kind="stable")]
            try:
                traj = np.stack([np.stack([t["predicted_trajectory_x"][i], t["predicted_trajectory_y"][i]], -1) for i in idx])
            except ValueError as e:
                raise ValueError(f"{path}: scenario {sid} track {tid}: trajectories of unequal length ({e})") from None
            if traj.shape[1:] != (AV2_PRED_STEPS, 2):
                raise ValueError(f"{path}: scenario {sid} track {tid}: trajectories of shape {traj.shape[1:]}, "
                                 f"expected ({AV2_PRED_STEPS}, 2)")
            trajs[tid] = traj
            probs = prob_all[idx]
        if not np.isclose(1.0, probs.sum()):
            raise ValueError(f"{path}: scenario {sid}: probabilities sum to {probs.sum()}, not 1")
        out[sid] = (probs, trajs)
    return out
