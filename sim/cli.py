"""``drope-sim key=value ...``: closed-loop rollouts of many scenarios, metrics and animations.

Examples::

    drope-sim data=[/data/womd/validation.tfrecord-00000-of-00150] policy=idm rollouts=8 out=runs/idm
    drope-sim generate.num_scenes=64 policy=learned model=model.onnx controlled=all out=runs/learned

Keys are the fields of :class:`drope.sim.config.SimConfig` (``drope-sim --help`` lists them with
defaults and comments); overrides use hydra syntax (no working-directory change, no hydra output
folder: ``out`` is relative to the current directory) and a bad key or type is refused naming it.
``data`` takes anything the dataset layer reads: WOMD TFRecord shards (plain or gzip), ``drope-data
cache`` directories, Argoverse 2 scenario directories or split roots, globs. Writes ``out/metrics.json``
(per-scenario entries + pooled aggregate), ``out/rollouts/<scenario>.npz`` and
``out/animations/<scenario>.gif``, and prints a table.

``submission=FILE`` also writes the rollouts as an official ``SimAgentsChallengeSubmission``
(one ``ScenarioRollouts`` per scenario, one joint scene per rollout, every sim agent = object
valid at the current step, 80 steps of world x/y/z/heading), checked with the official
``submission_specs`` rules; ``drope-score wosac FILE --scenarios ...`` scores it. The official
rules need ``rollouts=32`` and every sim agent simulated (``controlled=all``, or
``background=idm``); ``submission_meta.*`` fills the header (placeholders by default)::

    drope-sim data=[scenarios.tfrecord] policy=idm controlled=all rollouts=32 submission=sim_sub.binproto

``submission_dir=DIR`` writes the official sharded form instead (or as well):
``DIR/submission.binproto-00000-of-000NN`` … (each a full ``SimAgentsChallengeSubmission`` with
the header, at most ``submission_shard_size`` scenarios, default 200) and ``DIR/submission.tar.gz``
holding all shards, the file to upload; ``drope-score wosac`` reads the file, the directory or the
tar.gz.

``wosac=true`` scores every scenario in-process with ``drope.metrics.wosac`` (the official 2025
components on the same float32 world coordinates a submission carries) and writes them per
scenario and as the mean over scenarios under ``wosac`` in ``metrics.json``, with the key names
of ``drope-score wosac --json``. Same rules as ``submission`` (every sim agent simulated; 32
rollouts for official numbers).

Runs over many processes or machines: ``num_shards=N shard_index=I`` (or ``WORLD_SIZE``/``RANK``
as set by ``torchrun``; explicit keys win) simulates scenarios i ≡ I (mod N) of the ordered list
into ``out/shards/IIIII-of-NNNNN/`` (partial metrics, its ScenarioRollouts, a ``COMPLETE``
marker written last; a restarted shard that is complete is skipped). Then merge::

    drope-sim data=[...] num_shards=4 shard_index=0 out=runs/big ...   # one per machine, I = 0..3
    drope-sim merge runs/big [out=DIR] [submission=FILE] [submission_dir=DIR]

``merge`` takes run outputs or shard directories (copied from several machines), checks that
all N shards are complete with one configuration, and writes ``metrics.json``, ``submission``
and ``submission_dir`` exactly as one process would have (paths default to the recorded ones).

A scenario that fails (e.g. no map, NaN from the model) is listed under ``failed`` (index,
scenario id, error) in ``metrics.json`` and on stderr; the others still run (exit status 0,
2 if every scenario failed).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from drope.configs.schema import ConfigError, as_dict, compose, describe, from_dict, register, to_object
from drope.registry import Registry
from drope.sim.config import SCHEMA, SimConfig

SEED_STRIDE = 1_000_003
OFFICIAL_ROLLOUTS = 32  # joint scenes per scenario in the sim-agents challenge
BACKGROUNDS = ("log_replay", "idm")  # policies that can drive the agents not controlled
log = logging.getLogger(__name__)

__all__ = ["SimConfig", "load_config", "config_from_dict", "check_config", "build_policies", "build_dynamics_from",
           "iter_scenes", "simulate_scene", "run", "merge", "main"]


def load_config(overrides: list[str], name: str = "default") -> SimConfig:
    """``configs/sim/<name>.yaml`` with hydra ``key=value`` overrides, as the typed :class:`SimConfig`;
    a bad key or value raises :class:`ConfigError` naming it."""
    register(SCHEMA, SimConfig)
    return to_object(compose("sim", name, overrides), SimConfig)


def config_from_dict(d: dict) -> SimConfig:
    """The :class:`SimConfig` recorded in a metrics.json / shard part (checked against the schema)."""
    return from_dict(d, SimConfig, "recorded drope-sim config")


def check_config(c: SimConfig) -> SimConfig:
    """Fail early, naming the key, on unknown names or out-of-range values (types and keys are the
    schema's job)."""
    from drope.shards import shard_of
    from drope.sim.dynamics import DYNAMICS
    from drope.sim.policies import POLICIES
    from drope.sim.policies.base import CONTROLLED

    for key, reg in (("policy", POLICIES), ("background", POLICIES), ("controlled", CONTROLLED), ("dynamics", DYNAMICS)):
        reg.get(getattr(c, key))
    if c.background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {c.background!r}")
    for key in ("rollouts", "replan_every", "workers", "smooth_steps", "submission_shard_size"):
        if getattr(c, key) < 1:
            raise ValueError(f"{key} must be >= 1, got {getattr(c, key)}")
    if c.animation_format not in ("gif", "mp4"):
        raise ValueError(f"animation_format must be gif or mp4, got {c.animation_format!r}")
    if c.mode not in ("max", "sample"):
        raise ValueError(f"mode must be max or sample, got {c.mode!r}")
    if "learned" in (c.policy, c.background):
        if c.model is None:
            raise ValueError("policy=learned needs model=PATH (an ONNX file from drope-export or a drope-train checkpoint)")
        if not Path(c.model).is_file():
            raise FileNotFoundError(f"model={c.model}: no such file")
        if c.model_rows_per_call is not None and c.model_rows_per_call < 1:
            raise ValueError(f"model_rows_per_call must be >= 1 or null, got {c.model_rows_per_call}")
        # here, not in each worker: a bad setting fails the run, not every scenario
        from drope.sim.policies.predictors import is_onnx_model

        if is_onnx_model(c.model):
            from drope.export.runtime import check_providers

            if c.model_device != "auto":
                raise ValueError(f"model_device={c.model_device} applies to checkpoints; an ONNX model runs on "
                                 "model_providers (e.g. [CUDAExecutionProvider,CPUExecutionProvider])")
            try:
                check_providers(list(c.model_providers))
            except ValueError as e:
                raise ValueError(f"model_providers: {e}") from None
        else:
            from drope.device import resolve_device
            from drope.model.checkpoint import load_model

            resolve_device(c.model_device, "model_device")
            load_model(c.model)  # a file that is not a checkpoint is named now
    shard_of(c.num_shards, c.shard_index)  # names a bad key or RANK/WORLD_SIZE
    keys = [k for k, on in ((f"submission={c.submission}", c.submission is not None),
                            (f"submission_dir={c.submission_dir}", c.submission_dir is not None),
                            ("wosac=true", c.wosac)) if on]
    if keys:
        from drope.sim.submission import submission_rule_violation

        if (why := submission_rule_violation(c.policy, c.background, c.controlled)) is not None:
            raise ValueError(f"{keys[0]}: {why}")
        if c.rollouts != OFFICIAL_ROLLOUTS:
            log.warning("%s with rollouts=%d: the official sim-agents challenge needs rollouts=%d "
                        "(drope-score wosac --rollouts-per-scenario %d scores it anyway)", keys[0], c.rollouts,
                        OFFICIAL_ROLLOUTS, c.rollouts)
    return c


# ---- scenes ---------------------------------------------------------------------------------------
def iter_scenes(cfg: SimConfig, shard: int = 0, num_shards: int = 1, count: list | None = None):
    """``(index, scene, error)`` for the scenes of shard ``shard`` (index ≡ shard mod ``num_shards``).

    ``cfg.data`` is read through the dataset layer (:class:`drope.data.stream.SceneStreamDataset`):
    WOMD TFRecord shards (plain or gzip), ``drope-data cache`` directories, Argoverse 2 scenario
    directories or split roots, globs, in any mix. Only record headers of other shards' scenes are
    read; this shard's are decoded. ``error`` names a record that does not decode (``scene`` is then
    None). Without ``data``, scenes are generated in memory. The number of scenes of the whole run
    is appended to ``count`` at the end."""
    limit = cfg.max_scenarios
    if cfg.data:
        from drope.data.stream import SceneStreamDataset

        ds = SceneStreamDataset(list(cfg.data), on_corrupt="raise")
        total = len(ds) if limit is None else min(limit, len(ds))
        if ds.index_corrupt:  # the records after a bad header cannot be located, so the scene list is unknown
            raise ValueError(f"{ds.index_corrupt} bad TFRecord record header(s) in data={list(cfg.data)} "
                             "(the warning names the shard)")
        for i in range(shard, total, num_shards):
            try:
                yield i, ds[i], None
            except ValueError as e:  # the stream names file and record
                yield i, None, str(e)
    else:
        from drope.sim.generate.scenario import generate_scene

        total = cfg.generate.num_scenes if limit is None else min(limit, cfg.generate.num_scenes)
        for i in range(shard, total, num_shards):
            yield i, generate_scene(cfg.generate.seed, i)[0], None
    if count is not None:
        count.append(total)


# ---- one scenario -----------------------------------------------------------------------------------
#: policy name -> ``factory(cfg, dynamics)``: how drope-sim builds it from its config section.
#: A policy without an entry takes only the dynamics (``POLICIES.get(name)(dynamics)``).
POLICY_FACTORIES: Registry[Callable] = Registry("policy factory")
_PREDICTORS: dict[str, object] = {}  # one model (ONNX session or torch module) per model file and process


@POLICY_FACTORIES.register("idm")
@POLICY_FACTORIES.register("idm_reference")
def _idm_policy(cfg: SimConfig, dynamics, name: str):
    from drope.sim.policies import POLICIES

    return POLICIES.get(name)(dynamics, cfg.idm)


@POLICY_FACTORIES.register("learned")
def _learned_policy(cfg: SimConfig, dynamics, name: str):
    from drope.sim.policies import POLICIES

    if cfg.model is None:
        raise ValueError("policy=learned needs model=PATH (an ONNX file from drope-export or a drope-train checkpoint)")
    if cfg.model not in _PREDICTORS:
        from drope.sim.policies.predictors import open_predictor

        _PREDICTORS[cfg.model] = open_predictor(cfg.model, rows_per_call=cfg.model_rows_per_call,
                                                providers=cfg.model_providers, device=cfg.model_device)
    return POLICIES.get(name)(dynamics, _PREDICTORS[cfg.model], cfg.learned)


def _plain_policy(cfg: SimConfig, dynamics, name: str):
    from drope.sim.policies import POLICIES

    return POLICIES.get(name)(dynamics)


def make_policy(name: str, cfg: SimConfig, dynamics):
    factory = POLICY_FACTORIES.get(name) if name in POLICY_FACTORIES else _plain_policy
    return factory(cfg, dynamics, name)


def build_policies(cfg: SimConfig, scene_dynamics):
    """``(policy, background)``; one object when both are the same policy."""
    policy = make_policy(cfg.policy, cfg, scene_dynamics)
    background = policy if cfg.background == cfg.policy else make_policy(cfg.background, cfg, scene_dynamics)
    return policy, background


def build_dynamics_from(cfg: SimConfig):
    """The dynamics model ``cfg.dynamics`` with its section (``bicycle``, ``delta``) of the config."""
    from drope.sim.dynamics import DYNAMICS

    return DYNAMICS.get(cfg.dynamics)(cfg.dynamics_config)


def simulate_scene(cfg: SimConfig, scene, index: int, want_arrays: bool = False):
    """Roll out one scene; returns (summary entry, (rollouts, metrics) if asked, serialized
    ``ScenarioRollouts`` if a submission or WOSAC scoring is configured)."""
    import torch

    torch.set_num_threads(1)
    from drope.sim.events import agent_metrics, scenario_summary
    from drope.sim.policies import controlled_mask
    from drope.sim.rollout import run_rollouts

    dyn = build_dynamics_from(cfg)
    policy, background = build_policies(cfg, dyn)
    t0 = time.perf_counter()
    controlled = controlled_mask(scene, cfg.controlled)
    ro = run_rollouts(scene, policy, background, controlled, dyn, cfg.rollouts, seed=cfg.seed * SEED_STRIDE + index)
    sim_s = time.perf_counter() - t0
    m = agent_metrics(scene, ro, cfg.metrics)
    entry = scenario_summary(m, scene.scenario_id)
    entry["sim_seconds"] = sim_s
    if cfg.save_rollouts:
        d = Path(cfg.out) / "rollouts"
        d.mkdir(parents=True, exist_ok=True)
        ro.to_npz(d / f"{index:05d}_{scene.scenario_id}.npz", scene)
    proto = None
    if cfg.submission or cfg.submission_dir or cfg.wosac:
        from drope.sim.submission import REPLAY_POLICIES, sim_scenario_rollouts

        replayed = torch.where(controlled, cfg.policy in REPLAY_POLICIES, cfg.background in REPLAY_POLICIES)
        ro_proto = sim_scenario_rollouts(scene, ro, replayed)
        if cfg.wosac:
            entry["wosac"] = wosac_scores(scene, ro_proto)
        if cfg.submission or cfg.submission_dir:
            proto = ro_proto.SerializeToString()
    return entry, (ro, m) if want_arrays else None, proto


def wosac_scores(scene, ro_proto) -> dict:
    """Official WOSAC components of one scenario's rollouts, scored from the ``ScenarioRollouts``
    (its float32 world coordinates, as ``drope-score wosac`` reads a submission)."""
    from drope.metrics.cli import json_value
    from drope.metrics.submission import scenario_rollouts_arrays
    from drope.metrics.wosac import prepare_scene, score_prepared

    p = prepare_scene(scene)
    row = score_prepared(p, *scenario_rollouts_arrays(ro_proto, p))
    return {k: json_value(v) for k, v in row.items() if k != "scenario_id"}


def wosac_aggregate(entries: list[dict]) -> dict:
    """Mean over scenarios of each component (the official aggregate), skipping undefined values."""
    rows = [e["wosac"] for e in entries if "wosac" in e]
    out: dict = {"num_scenarios": len(rows)}
    for k in (rows[0] if rows else {}):
        vals = [r[k] for r in rows if r[k] is not None]
        out[k] = sum(vals) / len(vals) if vals else None
    return out


def simulate_safely(cfg: SimConfig, scene, index: int, error: str | None = None):
    """``(index, entry, proto, failure)``: a scenario that raises becomes a failure record naming it."""
    if error is not None:
        return index, None, None, {"index": index, "scenario_id": None, "error": error}
    try:
        entry, _, proto = simulate_scene(cfg, scene, index)
    except Exception as e:  # noqa: BLE001 - one bad scenario must not stop a 44k-scenario run
        return index, None, None, {"index": index, "scenario_id": scene.scenario_id, "error": f"{type(e).__name__}: {e}"}
    return index, {"index": index, **entry}, proto, None


def _worker(args):
    return simulate_safely(*args)


# ---- table ------------------------------------------------------------------------------------------
TABLE_KEYS = {"ade": "ADE m", "fde": "FDE m", "collision_rate": "collision", "offroad_rate": "off-road",
              "kinematic_infeasibility_rate": "kin.infeas", "red_light_violation_rate": "red light",
              "progress_ratio": "progress"}


def format_table(entries: list[dict], aggregate: dict) -> str:
    head = f"{'scenario':<24}" + "".join(f"{h:>11}" for h in TABLE_KEYS.values())
    rows = [head, "-" * len(head)]

    def fmt(v):
        return f"{v:>11.3f}" if isinstance(v, (int, float)) else f"{'-':>11}"

    for e in entries:
        rows.append(f"{e['scenario_id'][:24]:<24}" + "".join(fmt(e.get(k)) for k in TABLE_KEYS))
    rows.append("-" * len(head))
    rows.append(f"{'ALL (pooled)':<24}" + "".join(fmt(aggregate.get(k)) for k in TABLE_KEYS))
    return "\n".join(rows)


# ---- main -------------------------------------------------------------------------------------------
def _resolved(cfg: SimConfig) -> SimConfig:
    """The config as recorded: paths absolute (a merge may run elsewhere), the shard resolved."""
    from drope.shards import shard_of

    paths = {k: str(Path(v).resolve()) for k in ("out", "submission", "submission_dir") if (v := getattr(cfg, k))}
    index, n = shard_of(cfg.num_shards, cfg.shard_index)
    return dataclasses.replace(cfg, **paths, shard_index=index, num_shards=n)


def simulate_part(cfg: SimConfig) -> tuple[dict, dict[int, bytes]]:
    """Simulate this shard's scenarios; returns its part result and the serialized ``ScenarioRollouts``
    by scenario index (when a submission is configured)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from tqdm import tqdm

    I, N = cfg.shard_index, cfg.num_shards
    entries: dict[int, dict] = {}
    protos: dict[int, bytes] = {}
    failed: list[dict] = []
    to_animate: dict[int, object] = {}
    count: list = []
    t0 = time.perf_counter()

    def jobs():
        for i, scene, error in iter_scenes(cfg, I, N, count):
            if scene is not None and i < cfg.animate:
                to_animate[i] = scene
            yield cfg, scene, i, error

    def collect(i, entry, proto, failure):
        if failure is not None:
            failed.append(failure)
            log.warning("scenario %s (index %d) failed: %s", failure["scenario_id"], i, failure["error"])
        else:
            entries[i] = entry
            if proto is not None:
                protos[i] = proto

    bar = tqdm(desc="drope-sim" if N == 1 else f"drope-sim shard {I}/{N}", unit="scene")
    if cfg.workers == 1:
        for job in jobs():
            collect(*simulate_safely(*job))
            bar.update()
    else:  # a bounded window of scenes in flight: memory stays flat on 44k-scenario runs
        with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending: set = set()
            for job in jobs():
                pending.add(pool.submit(_worker, job))
                if len(pending) >= 2 * cfg.workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        collect(*f.result())
                        bar.update()
            for f in as_completed(pending):
                collect(*f.result())
                bar.update()
    bar.close()
    animations = []
    replay = dataclasses.replace(cfg, save_rollouts=False, submission=None, submission_dir=None, wosac=False)
    for i, scene in sorted(to_animate.items()):
        if i not in entries:
            continue
        _, (ro, m), _ = simulate_scene(replay, scene, i, want_arrays=True)
        from drope.sim.animate import animate_rollout

        out = Path(cfg.out)
        (out / "animations").mkdir(parents=True, exist_ok=True)
        info = animate_rollout(scene, ro, m, out / "animations" / f"{i:05d}_{scene.scenario_id}.{cfg.animation_format}")
        animations.append({"index": i, **info})
        log.info("animation %s: %d frames, %.3f s/frame", info["path"], info["frames"], info["seconds_per_frame"])
    part = {"config": as_dict(cfg), "shard": {"index": I, "num_shards": N, "num_scenarios_total": count[0] if count else 0},
            "scenarios": [entries[i] for i in sorted(entries)], "failed": sorted(failed, key=lambda f: f["index"]),
            "animations": animations, "wall_seconds": time.perf_counter() - t0}
    return part, protos


def finish(cfg: SimConfig, parts: list[dict], rollouts) -> dict:
    """Aggregate ``parts`` (one or all N), write the submissions from ``rollouts()`` (an iterator of
    ``ScenarioRollouts`` in scenario order) and ``out/metrics.json``; returns the metrics.json content."""
    from drope.sim.events import aggregate

    total = sum(p["shard"]["num_scenarios_total"] for p in parts[:1])
    if total == 0:
        raise ValueError("no scenes to simulate (empty data files or generate.num_scenes=0)")
    ordered = sorted((e for p in parts for e in p["scenarios"]), key=lambda e: e["index"])
    failed = sorted((f for p in parts for f in p["failed"]), key=lambda f: f["index"])
    if not ordered:
        raise ValueError(f"every scenario failed; the first: {failed[0]['scenario_id']}: {failed[0]['error']}")
    agg = aggregate(ordered)
    agg["wall_seconds"] = max(p["wall_seconds"] for p in parts)
    if cfg.wosac:
        agg["wosac"] = wosac_aggregate(ordered)
    result = {"config": as_dict(cfg), "aggregate": agg, "scenarios": ordered, "failed": failed}
    n = len(ordered)
    if cfg.submission:
        from drope.metrics.submission import write_sim_agents_submission

        try:
            n = write_sim_agents_submission(cfg.submission, rollouts(), cfg.submission_meta)
        except OSError as e:
            raise ValueError(f"submission={cfg.submission}: {e}") from e
        result["submission"] = {"path": str(Path(cfg.submission).resolve()), "scenarios": n,
                                "rollouts_per_scenario": cfg.rollouts}
        log.info("SimAgentsChallengeSubmission: %d scenarios x %d rollouts -> %s", n, cfg.rollouts, cfg.submission)
    if cfg.submission_dir:
        from drope.metrics.submission import write_sim_agents_submission_shards

        try:  # consumed lazily, one shard's worth at a time
            shards, tar_path = write_sim_agents_submission_shards(cfg.submission_dir, rollouts(), cfg.submission_meta,
                                                                  shard_size=cfg.submission_shard_size)
        except OSError as e:
            raise ValueError(f"submission_dir={cfg.submission_dir}: {e}") from e
        result["submission_shards"] = {"dir": str(Path(cfg.submission_dir).resolve()), "scenarios": n,
                                       "shards": [p.name for p in shards], "tar": str(tar_path.resolve()),
                                       "rollouts_per_scenario": cfg.rollouts}
        log.info("SimAgentsChallengeSubmission: %d scenarios in %d shards -> %s", n, len(shards), tar_path)
    result["animations"] = sorted((a for p in parts for a in p["animations"]), key=lambda a: a["index"])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def _parsed(protos: dict[int, bytes]):
    from waymo_open_dataset.protos.sim_agents_submission_pb2 import ScenarioRollouts

    return lambda: (ScenarioRollouts.FromString(protos[i]) for i in sorted(protos))


def run(cfg: SimConfig) -> dict:
    """Run the configured simulation; returns the metrics.json content (one shard's part when
    ``num_shards`` > 1: merge the parts with :func:`merge`)."""
    from drope.sim.shards import PART_ROLLOUTS, is_complete, mark_complete, part_dir

    cfg = _resolved(cfg)
    I, N = cfg.shard_index, cfg.num_shards
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    if N == 1:
        part, protos = simulate_part(cfg)
        return finish(cfg, [part], _parsed(protos))
    d = part_dir(cfg.out, I, N)
    recorded = as_dict(cfg)
    if is_complete(d, recorded):
        log.info("shard %d of %d is complete in %s: skipped", I, N, d)
        return {**json.loads((d / "metrics.json").read_text()), "skipped": True}
    d.mkdir(parents=True, exist_ok=True)
    (d / "COMPLETE").unlink(missing_ok=True)
    part, protos = simulate_part(cfg)
    if protos:
        from drope.metrics.submission import write_sim_agents_submission_shards

        write_sim_agents_submission_shards(d, _parsed(protos)(), cfg.submission_meta,
                                           shard_size=cfg.submission_shard_size, basename=PART_ROLLOUTS)
    part["num_rollout_protos"] = len(protos)
    (d / "metrics.json").write_text(json.dumps(part, indent=1))
    mark_complete(d, recorded)  # last: a shard killed before this line reruns
    return part


MERGE_KEYS = ("out", "submission", "submission_dir")  # what `drope-sim merge` may set


def merge(dirs: list[str], overrides: dict | None = None) -> dict:
    """Merge the N parts of a sharded run (see :mod:`drope.sim.shards`) into the single-process
    outputs; ``overrides`` may set ``out``, ``submission``, ``submission_dir``."""
    import heapq

    from drope.metrics.submission import iter_rollouts
    from drope.sim.shards import load_parts

    parts = load_parts(dirs)
    changes: dict = {"shard_index": None}
    for k, v in (overrides or {}).items():
        if k not in MERGE_KEYS:
            raise ValueError(f"drope-sim merge: unknown key {k!r} ({', '.join(MERGE_KEYS)})")
        changes[k] = str(Path(v).resolve()) if v not in (None, "null") else None
    cfg = dataclasses.replace(config_from_dict(parts[0][1]["config"]), **changes)

    def rollouts():
        streams = []
        for d, res in parts:
            idx = [e["index"] for e in res["scenarios"]]
            if res.get("num_rollout_protos"):
                streams.append(zip(idx, iter_rollouts(d)))
        return (ro for _, ro in heapq.merge(*streams, key=lambda x: x[0]))

    if (cfg.submission or cfg.submission_dir) and not any(res.get("num_rollout_protos") for _, res in parts):
        raise ValueError("the shards hold no ScenarioRollouts: run them with submission= or submission_dir= set")
    return finish(cfg, [res for _, res in parts], rollouts)


def _print_summary(result: dict, cfg_dict: dict) -> None:
    print(format_table(result["scenarios"], result["aggregate"]))
    if "submission" in result:
        sub = result["submission"]
        print(f"SimAgentsChallengeSubmission ({sub['scenarios']} scenarios x {sub['rollouts_per_scenario']} rollouts) "
              f"-> {sub['path']}")
    if "submission_shards" in result:
        sh = result["submission_shards"]
        print(f"SimAgentsChallengeSubmission ({sh['scenarios']} scenarios in {len(sh['shards'])} shards) -> {sh['tar']}")
    if "wosac" in result["aggregate"]:
        print(f"WOSAC metametric (mean over {result['aggregate']['wosac']['num_scenarios']} scenarios): "
              f"{result['aggregate']['wosac'].get('metametric')}")
    print(f"\n{result['aggregate']['num_rollouts']} rollouts of {len(result['scenarios'])} scenarios "
          f"({cfg_dict['policy']} on {cfg_dict['controlled']}, background {cfg_dict['background']}) -> "
          f"{Path(cfg_dict['out']) / 'metrics.json'}")


def _report_failed(failed: list[dict]) -> None:
    if failed:
        print(f"drope-sim: {len(failed)} scenario(s) failed (listed under 'failed' in metrics.json):", file=sys.stderr)
        for f in failed:
            print(f"  index {f['index']} scenario {f['scenario_id']}: {f['error']}", file=sys.stderr)


def main_merge(argv: list[str]) -> int:
    dirs = [a for a in argv if "=" not in a]
    overrides = dict(a.split("=", 1) for a in argv if "=" in a)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not dirs:
        print("drope-sim merge: give the run output(s) or shard directories to merge", file=sys.stderr)
        return 2
    try:
        result = merge(dirs, overrides)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"drope-sim merge: {e}", file=sys.stderr)
        return 2
    _print_summary(result, result["config"])
    _report_failed(result["failed"])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("Keys (drope.sim.config.SimConfig; defaults with overrides from configs/sim/default.yaml):\n")
        print(describe(load_config(argv[1:])))
        return 0
    if argv and argv[0] == "merge":
        return main_merge(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(argv)
    except ConfigError as e:  # hydra/OmegaConf name the bad key
        print(f"drope-sim: bad config or override: {e}", file=sys.stderr)
        return 2
    try:
        result = run(check_config(cfg))
    except (FileNotFoundError, ValueError, KeyError, TypeError) as e:
        print(f"drope-sim: {e}", file=sys.stderr)
        return 2
    shard = result.get("shard")
    if shard is not None and shard["num_shards"] > 1:
        done = "already complete, skipped" if result.get("skipped") else "done"
        print(f"shard {shard['index']} of {shard['num_shards']}: {len(result['scenarios'])} scenarios {done} -> "
              f"{Path(result['config']['out']) / 'shards'}; merge with: drope-sim merge {result['config']['out']}")
    else:
        _print_summary(result, result["config"])
    _report_failed(result["failed"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
