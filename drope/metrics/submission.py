"""Official submission files: sim-agents rollouts and motion predictions (protos only, no TensorFlow).

- :func:`rollouts_to_scenario_rollouts` / :func:`write_sim_agents_submission`: drope-sim output as
  ``ScenarioRollouts`` / ``SimAgentsChallengeSubmission`` (world coordinates, 80 steps per agent).
- :func:`write_sim_agents_submission_shards`: the same as ``submission.binproto-00000-of-000NN``
  shards plus the ``submission.tar.gz`` the official tutorial uploads.
- :func:`read_rollouts`: either file kind → ``ScenarioRollouts`` protos; :func:`iter_rollouts`
  streams them from a file, a directory of shards or a ``.tar.gz`` (one shard in memory at a time).
- :func:`validate_scenario_rollouts`: the official ``submission_specs`` rules plus finiteness,
  with errors naming the scenario and object; :func:`validate_with_submission_specs` runs the
  official checks themselves (``waymo_open_dataset.utils.sim_agents.submission_specs`` imports
  protos only, no TensorFlow).
- :class:`SubmissionMetadata`: the header fields both submission kinds share.
- :func:`write_motion_submission` / :func:`read_motion_submission`: ``MotionChallengeSubmission``
  with 16 points at 2 Hz (track steps 15, 20, …, 90).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from drope.geometry import world_to_frame
from drope.data.scene import Scene
from drope.metrics.motion import MotionMetricsConfig
from drope.metrics.wosac.config import WosacConfig
from drope.metrics.wosac.scoring import PreparedScene, RolloutError

Tensor = torch.Tensor


def _pb():
    from waymo_open_dataset.protos import motion_submission_pb2, sim_agents_submission_pb2

    return sim_agents_submission_pb2, motion_submission_pb2


@dataclass(frozen=True)
class SubmissionMetadata:
    """Header of a submission file (the fields the official submission protos share).

    The defaults are placeholders: a real challenge submission needs the ``account_name`` registered
    with the Waymo Open Dataset and a ``unique_method_name`` of your own.
    """

    account_name: str = "drope-user@example.com"
    unique_method_name: str = "drope"
    authors: tuple[str, ...] = ("drope",)
    affiliation: str = "drope"
    description: str = "DRoPE: rotary pose attention for multi-agent trajectory prediction"
    method_link: str = ""
    uses_lidar_data: bool = False
    uses_camera_data: bool = False
    uses_public_model_pretraining: bool = False
    num_model_parameters: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.authors, str):  # one author given as a plain string
            object.__setattr__(self, "authors", (self.authors,))
        object.__setattr__(self, "authors", tuple(str(a) for a in self.authors))

    def fields(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


# ---- sim agents ------------------------------------------------------------------------------------


def rollouts_to_scenario_rollouts(
    scene: Scene, xy: Tensor, z: Tensor, heading: Tensor, agent_index: Tensor
):
    """``ScenarioRollouts`` proto from rollouts ``xy [R, A, 80, 2]`` (scene frame), ``z [R, A, 80]``
    (world m), ``heading [R, A, 80]`` (scene frame) of agents ``agent_index [A]``."""
    sa, _ = _pb()
    xy = torch.as_tensor(xy).detach().cpu()
    R, A = xy.shape[:2]
    world_xy = scene.to_world_xy(xy)  # [R, A, F, 2] float64
    world_h = scene.to_world_heading(torch.as_tensor(heading))
    z = torch.as_tensor(z).detach().cpu().double().numpy()
    ids = scene.agent_id[torch.as_tensor(agent_index)].tolist()
    out = sa.ScenarioRollouts(scenario_id=scene.scenario_id)
    for r in range(R):
        js = out.joint_scenes.add()
        for a in range(A):
            js.simulated_trajectories.add(
                center_x=world_xy[r, a, :, 0].tolist(),
                center_y=world_xy[r, a, :, 1].tolist(),
                center_z=z[r, a].tolist(),
                heading=world_h[r, a].tolist(),
                object_id=int(ids[a]),
            )
    return out


def write_sim_agents_submission(
    path: str | Path,
    scenario_rollouts: Iterable,
    metadata: SubmissionMetadata = SubmissionMetadata(),
    *,
    closed_loop: bool = True,
) -> int:
    """Write one ``SimAgentsChallengeSubmission`` file; returns the number of scenarios.

    ``closed_loop`` fills ``acknowledge_complies_with_closed_loop_requirement`` (drope-sim's
    rollouts are closed loop: every step's actions see only the simulated state)."""
    sa, _ = _pb()
    sub = sa.SimAgentsChallengeSubmission(
        scenario_rollouts=list(scenario_rollouts),
        submission_type=sa.SimAgentsChallengeSubmission.SIM_AGENTS_SUBMISSION,
        acknowledge_complies_with_closed_loop_requirement=closed_loop,
        **metadata.fields(),
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(sub.SerializeToString())
    return len(sub.scenario_rollouts)


#: official shard names (the upload server's pattern)
SHARD_PATTERN = r".*\.binproto-\d{5}-of-\d{5}"


def write_sim_agents_submission_shards(
    directory: str | Path,
    scenario_rollouts: Iterable,
    metadata: SubmissionMetadata = SubmissionMetadata(),
    *,
    shard_size: int = 200,
    closed_loop: bool = True,
    basename: str = "submission",
) -> tuple[list[Path], Path]:
    """Write ``directory/<basename>.binproto-00000-of-000NN`` … (each a full
    ``SimAgentsChallengeSubmission`` with the header, at most ``shard_size`` scenarios) and
    ``directory/<basename>.tar.gz`` holding all shards; returns (shard paths, tar path).

    ``scenario_rollouts`` is consumed lazily, one shard's worth at a time."""
    import itertools
    import tarfile

    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob(f"{basename}.binproto-*-of-*"):  # stale shards of an earlier run would be tarred
        old.unlink()
    tmp = []
    it = iter(scenario_rollouts)
    while chunk := list(itertools.islice(it, shard_size)):
        p = d / f"{basename}.binproto-{len(tmp):05d}.partial"
        write_sim_agents_submission(p, chunk, metadata, closed_loop=closed_loop)
        tmp.append(p)
    if not tmp:
        raise ValueError("no scenario rollouts to write")
    shards = []
    for i, p in enumerate(tmp):
        q = d / f"{basename}.binproto-{i:05d}-of-{len(tmp):05d}"
        p.replace(q)
        shards.append(q)
    tar_path = d / f"{basename}.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for q in shards:
            tar.add(q, arcname=q.name)
    return shards, tar_path


def _rollouts_from_bytes(data: bytes, where: str) -> list:
    sa, _ = _pb()
    try:
        sub = sa.SimAgentsChallengeSubmission.FromString(data)
        if len(sub.scenario_rollouts):
            return list(sub.scenario_rollouts)
    except Exception:  # noqa: BLE001 - not a submission; try the single-scenario message
        pass
    try:
        ro = sa.ScenarioRollouts.FromString(data)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{where}: neither a SimAgentsChallengeSubmission nor a ScenarioRollouts proto ({e})") from e
    if not ro.scenario_id or not len(ro.joint_scenes):
        raise ValueError(f"{where}: no scenario rollouts found (not a SimAgentsChallengeSubmission/ScenarioRollouts?)")
    return [ro]


def iter_rollouts(path: str | Path):
    """``ScenarioRollouts`` one by one from a submission / ``ScenarioRollouts`` file, a directory of
    ``*.binproto-NNNNN-of-NNNNN`` shards, or a ``.tar.gz`` / ``.tar`` of them; one shard is read
    (and held in memory) at a time."""
    import re
    import tarfile

    path = Path(path)
    if path.is_dir():
        shards = sorted(p for p in path.iterdir() if re.fullmatch(SHARD_PATTERN, p.name))
        if not shards:
            raise ValueError(f"{path}: no shards named like {SHARD_PATTERN}")
        for p in shards:
            yield from _rollouts_from_bytes(p.read_bytes(), str(p))
    elif path.name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(path, "r:*") as tar:
                members = sorted((m for m in tar if m.isfile() and re.fullmatch(SHARD_PATTERN, Path(m.name).name)),
                                 key=lambda m: m.name)
                if not members:
                    raise ValueError(f"{path}: no shards named like {SHARD_PATTERN} in the archive")
                for m in members:
                    yield from _rollouts_from_bytes(tar.extractfile(m).read(), f"{path}:{m.name}")
        except tarfile.TarError as e:
            raise ValueError(f"{path}: not a readable tar archive ({e})") from e
    else:
        yield from _rollouts_from_bytes(path.read_bytes(), str(path))


def read_rollouts(path: str | Path) -> list:
    """``ScenarioRollouts`` protos from a ``SimAgentsChallengeSubmission`` or one ``ScenarioRollouts``
    file (or a shard directory / ``.tar.gz``: see :func:`iter_rollouts`)."""
    return list(iter_rollouts(path))


def validate_scenario_rollouts(ro, scene: Scene, config: WosacConfig = WosacConfig(), n_rollouts: int | None = None) -> None:
    """The official rules: ``scenario_id`` set, ``n_rollouts`` joint scenes (default 32), every
    trajectory 80 steps of x/y/z/heading, exactly the objects valid at the current step — plus
    finite values. Raises :class:`RolloutError` naming scenario, rollout and object."""
    sid = ro.scenario_id
    if not sid:
        raise RolloutError("ScenarioRollouts without scenario_id")
    want = config.num_rollouts if n_rollouts is None else n_rollouts
    if len(ro.joint_scenes) != want:
        raise RolloutError(f"scenario {sid}: {len(ro.joint_scenes)} rollouts, expected {want}")
    sim_ids = set(scene.agent_id[scene.agent_valid[:, config.current_index]].tolist())
    for r, js in enumerate(ro.joint_scenes):
        seen = set()
        for tr in js.simulated_trajectories:
            oid = tr.object_id
            where = f"scenario {sid}, rollout {r}, object {oid}"
            for f in ("center_x", "center_y", "center_z", "heading"):
                n = len(getattr(tr, f))
                if n != config.num_future_steps:
                    raise RolloutError(f"{where}: {f} has {n} steps, expected {config.num_future_steps}")
                if not all(math.isfinite(v) for v in getattr(tr, f)):
                    raise RolloutError(f"{where}: {f} holds NaN/Inf")
            if oid not in sim_ids:
                raise RolloutError(f"{where}: not a sim agent (not valid at the current step)")
            if oid in seen:
                raise RolloutError(f"{where}: appears twice")
            seen.add(oid)
        missing = sim_ids - seen
        if missing:
            raise RolloutError(f"scenario {sid}, rollout {r}: sim agents {sorted(missing)} are missing")


def validate_with_submission_specs(ro, scenario_proto) -> None:
    """The official checks of ``submission_specs`` (sim-agents challenge) on one ``ScenarioRollouts``:
    every joint scene holds exactly the sim agents with 80 steps each; with 32 joint scenes the
    full ``validate_scenario_rollouts`` (scenario id, rollout count) runs too. Raises
    :class:`RolloutError` with the official message, prefixed by the scenario."""
    from waymo_open_dataset.utils.sim_agents import submission_specs as specs

    challenge = specs.ChallengeType.SIM_AGENTS
    try:
        if len(ro.joint_scenes) == specs.get_submission_config(challenge).n_rollouts:
            specs.validate_scenario_rollouts(ro, scenario_proto, challenge)
        else:  # fewer rollouts (tests, quick looks): the per-scene rules still apply
            for js in ro.joint_scenes:
                specs.validate_joint_scene(js, scenario_proto, challenge)
    except ValueError as e:
        raise RolloutError(f"scenario {ro.scenario_id}: official submission_specs check failed: {e}") from None


def scenario_rollouts_arrays(ro, p: PreparedScene) -> tuple[Tensor, Tensor, Tensor]:
    """Rollouts as ``xy [N, O, F, 2]`` scene frame, ``z``, ``heading`` (unwrapped scene frame) in
    the prepared object order. Assumes :func:`validate_scenario_rollouts` passed."""
    scene = p.scene
    order = {int(scene.agent_id[a]): i for i, a in enumerate(p.objects.tolist())}
    N, O = len(ro.joint_scenes), len(order)
    F = len(ro.joint_scenes[0].simulated_trajectories[0].center_x)
    raw = np.zeros((N, O, 4, F), np.float64)
    for n, js in enumerate(ro.joint_scenes):
        for tr in js.simulated_trajectories:
            raw[n, order[tr.object_id]] = (tr.center_x, tr.center_y, tr.center_z, tr.heading)
    xy = world_to_frame(np.moveaxis(raw[:, :, :2], 2, -1), scene.origin_xy.numpy(), float(scene.origin_heading))
    heading = raw[:, :, 3] - float(scene.origin_heading)
    return torch.from_numpy(xy), torch.from_numpy(raw[:, :, 2].copy()), torch.from_numpy(heading)


# ---- motion ----------------------------------------------------------------------------------------


def write_motion_submission(
    path: str | Path,
    scenes: Sequence[Scene],
    predictions: Sequence[tuple[Tensor, Tensor, Tensor]],
    metadata: SubmissionMetadata = SubmissionMetadata(description="DRoPE transformer predictions"),
    *,
    config: MotionMetricsConfig = MotionMetricsConfig(),
) -> int:
    """Write a ``MotionChallengeSubmission``: per scene ``(agent_index [R], pred_xy [R, K, 80, 2]
    scene frame at 10 Hz, pred_prob [R, K])``; the first ``config.max_predictions`` modes, points
    at the 2 Hz steps (16 per trajectory, track steps 15…90), world coordinates, object id = track
    id, confidence = the given probability. Returns the number of scenarios."""
    _, ms = _pb()
    sub = ms.MotionChallengeSubmission(submission_type=ms.MotionChallengeSubmission.MOTION_PREDICTION,
                                       **metadata.fields())
    idx = torch.arange(config.num_prediction_steps) * config.ratio + config.ratio - 1
    if len(scenes) != len(predictions):
        raise ValueError(f"{len(scenes)} scenes but {len(predictions)} prediction tuples")
    for scene, (agent_index, pred_xy, pred_prob) in zip(scenes, predictions):
        pred_xy = torch.as_tensor(pred_xy).detach().cpu()[:, : config.max_predictions]
        if pred_xy.dim() != 4 or pred_xy.shape[2] != config.track_future_samples:
            raise ValueError(f"scene {scene.scenario_id!r}: pred_xy has shape {tuple(pred_xy.shape)}, "
                             f"expected [R, K, {config.track_future_samples}, 2]")
        if not bool(torch.isfinite(pred_xy).all()):
            raise ValueError(f"scene {scene.scenario_id!r}: predictions hold NaN/Inf")
        world = scene.to_world_xy(pred_xy[:, :, idx])  # [R, K, 16, 2]
        prob = torch.as_tensor(pred_prob).detach().cpu().double().numpy()[:, : config.max_predictions]
        sp = sub.scenario_predictions.add(scenario_id=scene.scenario_id)
        for r, a in enumerate(torch.as_tensor(agent_index).tolist()):
            pred = sp.single_predictions.predictions.add(object_id=int(scene.agent_id[a]))
            for k in range(world.shape[1]):
                st = pred.trajectories.add(confidence=float(prob[r, k]))
                st.trajectory.center_x.extend(world[r, k, :, 0].tolist())
                st.trajectory.center_y.extend(world[r, k, :, 1].tolist())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(sub.SerializeToString())
    return len(sub.scenario_predictions)


def read_motion_submission(path: str | Path) -> dict[str, list[tuple[int, np.ndarray, np.ndarray]]]:
    """``{scenario_id: [(object_id, xy [K, P, 2] world, confidence [K]), ...]}`` from a
    ``MotionChallengeSubmission`` (single predictions; joint ones are rejected)."""
    _, ms = _pb()
    try:
        sub = ms.MotionChallengeSubmission.FromString(Path(path).read_bytes())
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: not a MotionChallengeSubmission proto ({e})") from e
    out: dict[str, list] = {}
    for sp in sub.scenario_predictions:
        if sp.HasField("joint_prediction"):
            raise ValueError(f"{path}: scenario {sp.scenario_id}: joint (interaction) predictions are not supported")
        rows = []
        for pred in sp.single_predictions.predictions:
            xs = [list(t.trajectory.center_x) for t in pred.trajectories]
            ys = [list(t.trajectory.center_y) for t in pred.trajectories]
            lens = {len(x) for x in xs} | {len(y) for y in ys}
            if len(lens) != 1:
                raise ValueError(f"{path}: scenario {sp.scenario_id}, object {pred.object_id}: trajectories differ in length {sorted(lens)}")
            xy = np.stack([np.asarray(xs, np.float64), np.asarray(ys, np.float64)], axis=-1)
            conf = np.asarray([t.confidence for t in pred.trajectories], np.float64)
            rows.append((int(pred.object_id), xy, conf))
        out[sp.scenario_id] = rows
    return out
