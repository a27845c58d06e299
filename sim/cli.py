"""``drope-sim key=value ...``: closed-loop rollouts of many scenarios, metrics and animations.

Examples::

    drope-sim data=[/data/womd/validation.tfrecord-00000-of-00150] policy=idm rollouts=8 out=runs/idm
    drope-sim generate.num_scenes=64 policy=learned model=model.onnx controlled=all out=runs/learned

Overrides use hydra syntax on ``configs/sim/default.yaml`` (no working-directory change, no hydra
output folder: ``out`` is relative to the current directory). Writes ``out/metrics.json``
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

import json
import logging
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from drope.configs import config_dir

CONFIG_DIR = config_dir("sim")
SEED_STRIDE = 1_000_003
OFFICIAL_ROLLOUTS = 32  # joint scenes per scenario in the sim-agents challenge
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimConfig:
    """Top level of ``configs/sim/default.yaml``; component sections map to their own dataclasses
    (``bicycle`` → BicycleConfig, ``idm`` → IDMPolicyConfig, ``metrics`` → MetricsConfig)."""

    data: list = field(default_factory=list)
    generate: dict = field(default_factory=lambda: {"num_scenes": 8, "seed": 0})
    max_scenarios: int | None = None
    policy: str = "constant_velocity"
    background: str = "log_replay"
    controlled: str = "all"
    dynamics: str = "bicycle"
    rollouts: int = 4
    seed: int = 0
    model: str | None = None
    replan_every: int = 10
    mode: str = "max"
    smooth_steps: int = 5
    out: str = "sim_out"
    workers: int = 2
    animate: int = 1
    animation_format: str = "gif"
    save_rollouts: bool = True
    submission: str | None = None
    submission_dir: str | None = None
    submission_shard_size: int = 200
    submission_meta: dict = field(default_factory=dict)
    wosac: bool = False
    num_shards: int | None = None
    shard_index: int | None = None
    bicycle: dict = field(default_factory=dict)
    idm: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


def check_config(cfg) -> SimConfig:
    """Fail early, naming the key, on unknown keys, names or out-of-range values."""
    from drope.sim.dynamics import DYNAMICS, BicycleConfig
    from drope.sim.metrics import MetricsConfig
    from drope.sim.policies import POLICIES
    from drope.sim.policies.base import CONTROLLED
    from drope.sim.policies.idm import IDMPolicyConfig

    c = SimConfig(**OmegaConf.to_container(cfg, resolve=True))  # TypeError names an unknown key
    for key, reg in (("policy", POLICIES), ("background", POLICIES), ("controlled", CONTROLLED), ("dynamics", DYNAMICS)):
        reg.get(getattr(c, key))
    if c.background not in ("log_replay", "idm"):
        raise ValueError(f"background must be log_replay or idm, got {c.background!r}")
    for key in ("rollouts", "replan_every", "workers", "smooth_steps"):
        if getattr(c, key) < 1:
            raise ValueError(f"{key} must be >= 1, got {getattr(c, key)}")
    if c.animation_format not in ("gif", "mp4"):
        raise ValueError(f"animation_format must be gif or mp4, got {c.animation_format!r}")
    BicycleConfig(**c.bicycle), IDMPolicyConfig(**c.idm), MetricsConfig(**c.metrics)
    submission_metadata(c)  # TypeError names an unknown submission_meta key
    if c.submission_shard_size < 1:
        raise ValueError(f"submission_shard_size must be >= 1, got {c.submission_shard_size}")
    if c.policy == "learned" or c.background == "learned":
        if c.model is None:
            raise ValueError("policy=learned needs model=PATH (an ONNX file from drope-export)")
        if not Path(c.model).is_file():
            raise FileNotFoundError(f"model={c.model}: no such file")
    from drope.shards import shard_of

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


def submission_metadata(cfg):
    from drope.metrics.submission import SubmissionMetadata

    return SubmissionMetadata(**cfg.submission_meta)  # it normalises authors (str or list) itself


def load_config(overrides: list[str], name: str = "default"):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


# ---- scenes ---------------------------------------------------------------------------------------
def _shards(data) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, data):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if ".tfrecord" in q.name and not q.name.endswith(".npz"))
            if not found:
                raise FileNotFoundError(f"no .tfrecord files in directory {p}")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such scenario file or directory: {p}")
    return out


def iter_scenes(cfg, shard: int = 0, num_shards: int = 1, count: list | None = None):
    """``(index, scene, error)`` for the scenes of shard ``shard`` (index ≡ shard mod ``num_shards``)
    from ``cfg.data`` shards (real or generated), else generated in memory; only those records are
    decoded. ``error`` names a record that does not decode (``scene`` is then None). The number of
    scenes of the whole run is appended to ``count`` at the end."""
    limit = cfg.max_scenarios
    total = 0
    if cfg.data:
        from drope.data.tfrecord import index_records, open_records, read_record_at
        from drope.data.womd import scene_from_bytes

        for path in _shards(cfg.data):
            records, bad = index_records(path)
            if bad:
                raise ValueError(f"{path}: bad record header after record {len(records)}")
            with open_records(path) as f:
                for r, (offset, length) in enumerate(records):
                    if limit is not None and total >= limit:
                        break
                    if total % num_shards == shard:
                        try:
                            yield total, scene_from_bytes(read_record_at(f, path, r, offset, length)), None
                        except ValueError as e:  # CorruptRecordError and Scene validation
                            yield total, None, f"{path} record {r}: {e}"
                    total += 1
    else:
        from drope.sim.generate.scenario import generate_scene

        total = cfg.generate.num_scenes if limit is None else min(limit, cfg.generate.num_scenes)
        for i in range(shard, total, num_shards):
            yield i, generate_scene(int(cfg.generate.seed), i)[0], None
    if count is not None:
        count.append(total)


# ---- one scenario -----------------------------------------------------------------------------------
_PREDICTOR = None  # one ONNX session per process


def build_policies(cfg, scene_dynamics):
    from drope.sim.policies import POLICIES
    from drope.sim.policies.learned import LearnedConfig

    def make(name: str):
        cls = POLICIES.get(name)
        if name == "learned":
            global _PREDICTOR
            if cfg.model is None:
                raise ValueError("policy=learned needs model=PATH (an ONNX file from drope-export)")
            if _PREDICTOR is None:
                from drope.sim.policies.predictors import OnnxScenePredictor

                _PREDICTOR = OnnxScenePredictor(cfg.model, threads=1)
            return cls(scene_dynamics, _PREDICTOR, LearnedConfig(replan_every=int(cfg.replan_every), mode=str(cfg.mode),
                                                              smooth_steps=int(cfg.smooth_steps)))
        if name == "idm":
            from drope.sim.policies.idm import IDMPolicyConfig

            return cls(scene_dynamics, IDMPolicyConfig(**cfg.idm))
        return cls(scene_dynamics)

    policy = make(cfg.policy)
    background = policy if cfg.background == cfg.policy else make(cfg.background)
    return policy, background


def build_dynamics_from(cfg):
    from drope.sim.dynamics import build_dynamics

    kw = dict(cfg.bicycle) if cfg.dynamics == "bicycle" else {}
    return build_dynamics(cfg.dynamics, **kw)


def simulate_scene(cfg, scene, index: int, want_arrays: bool = False):
    """Roll out one scene; returns (summary entry, (rollouts, metrics) if asked, serialized
    ``ScenarioRollouts`` if ``cfg.submission`` is set)."""
    import torch

    torch.set_num_threads(1)
    from drope.sim.metrics import MetricsConfig, agent_metrics, scenario_summary
    from drope.sim.policies import controlled_mask
    from drope.sim.rollout import run_rollouts

    dyn = build_dynamics_from(cfg)
    policy, background = build_policies(cfg, dyn)
    t0 = time.perf_counter()
    controlled = controlled_mask(scene, cfg.controlled)
    ro = run_rollouts(scene, policy, background, controlled, dyn, int(cfg.rollouts),
                      seed=int(cfg.seed) * SEED_STRIDE + index)
    sim_s = time.perf_counter() - t0
    m = agent_metrics(scene, ro, MetricsConfig(**cfg.metrics))
    entry = scenario_summary(m, scene.scenario_id)
    entry["sim_seconds"] = sim_s
    if cfg.save_rollouts:
        d = Path(cfg.out) / "rollouts"
        d.mkdir(parents=True, exist_ok=True)
        ro.to_npz(d / f"{index:05d}_{scene.scenario_id}.npz", scene)
    proto = None
    if cfg.get("submission") or cfg.get("submission_dir") or cfg.get("wosac"):
        from drope.sim.submission import REPLAY_POLICIES, sim_scenario_rollouts

        replayed = torch.where(controlled, cfg.policy in REPLAY_POLICIES, cfg.background in REPLAY_POLICIES)
        ro_proto = sim_scenario_rollouts(scene, ro, replayed)
        if cfg.get("wosac"):
            entry["wosac"] = wosac_scores(scene, ro_proto)
        if cfg.get("submission") or cfg.get("submission_dir"):
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


def simulate_safely(cfg_dict: dict, scene, index: int, error: str | None = None):
    """``(index, entry, proto, failure)``: a scenario that raises becomes a failure record naming it."""
    if error is not None:
        return index, None, None, {"index": index, "scenario_id": None, "error": error}
    try:
        entry, _, proto = simulate_scene(OmegaConf.create(cfg_dict), scene, index)
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
def _resolved(cfg) -> dict:
    """The config as recorded: paths absolute (a merge may run elsewhere), the shard resolved."""
    from drope.shards import shard_of

    d = OmegaConf.to_container(cfg, resolve=True)
    for k in ("out", "submission", "submission_dir"):
        if d.get(k):
            d[k] = str(Path(d[k]).resolve())
    d["shard_index"], d["num_shards"] = shard_of(d.get("num_shards"), d.get("shard_index"))
    return d


def simulate_part(cfg_dict: dict) -> tuple[dict, dict[int, bytes]]:
    """Simulate this shard's scenarios; returns its part result and the serialized ``ScenarioRollouts``
    by scenario index (when a submission is configured)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from tqdm import tqdm

    cfg = OmegaConf.create(cfg_dict)
    I, N = cfg_dict["shard_index"], cfg_dict["num_shards"]
    entries: dict[int, dict] = {}
    protos: dict[int, bytes] = {}
    failed: list[dict] = []
    to_animate: dict[int, object] = {}
    count: list = []
    t0 = time.perf_counter()

    def jobs():
        for i, scene, error in iter_scenes(cfg, I, N, count):
            if scene is not None and i < int(cfg.animate):
                to_animate[i] = scene
            yield cfg_dict, scene, i, error

    def collect(i, entry, proto, failure):
        if failure is not None:
            failed.append(failure)
            log.warning("scenario %s (index %d) failed: %s", failure["scenario_id"], i, failure["error"])
        else:
            entries[i] = entry
            if proto is not None:
                protos[i] = proto

    bar = tqdm(desc="drope-sim" if N == 1 else f"drope-sim shard {I}/{N}", unit="scene")
    if int(cfg.workers) == 1:
        for job in jobs():
            collect(*simulate_safely(*job))
            bar.update()
    else:  # a bounded window of scenes in flight: memory stays flat on 44k-scenario runs
        with ProcessPoolExecutor(int(cfg.workers), mp_context=multiprocessing.get_context("spawn")) as pool:
            pending: set = set()
            for job in jobs():
                pending.add(pool.submit(_worker, job))
                if len(pending) >= 2 * int(cfg.workers):
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        collect(*f.result())
                        bar.update()
            for f in as_completed(pending):
                collect(*f.result())
                bar.update()
    bar.close()
    animations = []
    for i, scene in sorted(to_animate.items()):
        if i not in entries:
            continue
        _, (ro, m), _ = simulate_scene(OmegaConf.create({**cfg_dict, "save_rollouts": False, "submission": None,
                                                         "submission_dir": None, "wosac": False}), scene, i, want_arrays=True)
        from drope.sim.animate import animate_rollout

        out = Path(cfg.out)
        (out / "animations").mkdir(parents=True, exist_ok=True)
        info = animate_rollout(scene, ro, m, out / "animations" / f"{i:05d}_{scene.scenario_id}.{cfg.animation_format}")
        animations.append({"index": i, **info})
        log.info("animation %s: %d frames, %.3f s/frame", info["path"], info["frames"], info["seconds_per_frame"])
    part = {"config": cfg_dict, "shard": {"index": I, "num_shards": N, "num_scenarios_total": count[0] if count else 0},
            "scenarios": [entries[i] for i in sorted(entries)], "failed": sorted(failed, key=lambda f: f["index"]),
            "animations": animations, "wall_seconds": time.perf_counter() - t0}
    return part, protos


def finish(cfg_dict: dict, parts: list[dict], rollouts) -> dict:
    """Aggregate ``parts`` (one or all N), write the submissions from ``rollouts()`` (an iterator of
    ``ScenarioRollouts`` in scenario order) and ``out/metrics.json``; returns the metrics.json content."""
    from drope.sim.metrics import aggregate

    cfg = OmegaConf.create(cfg_dict)
    total = sum(p["shard"]["num_scenarios_total"] for p in parts[:1])
    if total == 0:
        raise ValueError("no scenes to simulate (empty data files or generate.num_scenes=0)")
    ordered = sorted((e for p in parts for e in p["scenarios"]), key=lambda e: e["index"])
    failed = sorted((f for p in parts for f in p["failed"]), key=lambda f: f["index"])
    if not ordered:
        raise ValueError(f"every scenario failed; the first: {failed[0]['scenario_id']}: {failed[0]['error']}")
    agg = aggregate(ordered)
    agg["wall_seconds"] = max(p["wall_seconds"] for p in parts)
    if cfg.get("wosac"):
        agg["wosac"] = wosac_aggregate(ordered)
    result = {"config": cfg_dict, "aggregate": agg, "scenarios": ordered, "failed": failed}
    n = len(ordered)
    if cfg.submission:
        from drope.metrics.submission import write_sim_agents_submission

        try:
            n = write_sim_agents_submission(cfg.submission, rollouts(), submission_metadata(cfg))
        except OSError as e:
            raise ValueError(f"submission={cfg.submission}: {e}") from e
        result["submission"] = {"path": str(Path(cfg.submission).resolve()), "scenarios": n,
                                "rollouts_per_scenario": int(cfg.rollouts)}
        log.info("SimAgentsChallengeSubmission: %d scenarios x %d rollouts -> %s", n, cfg.rollouts, cfg.submission)
    if cfg.get("submission_dir"):
        from drope.metrics.submission import write_sim_agents_submission_shards

        try:  # consumed lazily, one shard's worth at a time
            shards, tar_path = write_sim_agents_submission_shards(cfg.submission_dir, rollouts(), submission_metadata(cfg),
                                                                  shard_size=int(cfg.submission_shard_size))
        except OSError as e:
            raise ValueError(f"submission_dir={cfg.submission_dir}: {e}") from e
        result["submission_shards"] = {"dir": str(Path(cfg.submission_dir).resolve()), "scenarios": n,
                                       "shards": [p.name for p in shards], "tar": str(tar_path.resolve()),
                                       "rollouts_per_scenario": int(cfg.rollouts)}
        log.info("SimAgentsChallengeSubmission: %d scenarios in %d shards -> %s", n, len(shards), tar_path)
    result["animations"] = sorted((a for p in parts for a in p["animations"]), key=lambda a: a["index"])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def _parsed(protos: dict[int, bytes]):
    from waymo_open_dataset.protos.sim_agents_submission_pb2 import ScenarioRollouts

    return lambda: (ScenarioRollouts.FromString(protos[i]) for i in sorted(protos))


def run(cfg) -> dict:
    """Run the configured simulation; returns the metrics.json content (one shard's part when
    ``num_shards`` > 1: merge the parts with :func:`merge`)."""
    from drope.sim.shards import PART_ROLLOUTS, is_complete, mark_complete, part_dir

    cfg_dict = _resolved(cfg)
    I, N = cfg_dict["shard_index"], cfg_dict["num_shards"]
    Path(cfg_dict["out"]).mkdir(parents=True, exist_ok=True)
    if N == 1:
        part, protos = simulate_part(cfg_dict)
        return finish(cfg_dict, [part], _parsed(protos))
    d = part_dir(cfg_dict["out"], I, N)
    if is_complete(d, cfg_dict):
        log.info("shard %d of %d is complete in %s: skipped", I, N, d)
        return {**json.loads((d / "metrics.json").read_text()), "skipped": True}
    d.mkdir(parents=True, exist_ok=True)
    (d / "COMPLETE").unlink(missing_ok=True)
    part, protos = simulate_part(cfg_dict)
    if protos:
        from drope.metrics.submission import write_sim_agents_submission_shards

        write_sim_agents_submission_shards(d, _parsed(protos)(), submission_metadata(cfg),
                                           shard_size=int(cfg.submission_shard_size), basename=PART_ROLLOUTS)
    part["num_rollout_protos"] = len(protos)
    (d / "metrics.json").write_text(json.dumps(part, indent=1))
    mark_complete(d, cfg_dict)  # last: a shard killed before this line reruns
    return part


def merge(dirs: list[str], overrides: dict | None = None) -> dict:
    """Merge the N parts of a sharded run (see :mod:`sim.shards`) into the single-process outputs;
    ``overrides`` may set ``out``, ``submission``, ``submission_dir``."""
    import heapq

    from drope.metrics.submission import iter_rollouts
    from drope.sim.shards import load_parts

    parts = load_parts(dirs)
    cfg_dict = {**parts[0][1]["config"], "shard_index": None}
    for k, v in (overrides or {}).items():
        if k not in ("out", "submission", "submission_dir"):
            raise ValueError(f"drope-sim merge: unknown key {k!r} (out, submission, submission_dir)")
        cfg_dict[k] = str(Path(v).resolve()) if v not in (None, "null") else None

    def rollouts():
        streams = []
        for d, res in parts:
            idx = [e["index"] for e in res["scenarios"]]
            if res.get("num_rollout_protos"):
                streams.append(zip(idx, iter_rollouts(d)))
        return (ro for _, ro in heapq.merge(*streams, key=lambda x: x[0]))

    if (cfg_dict.get("submission") or cfg_dict.get("submission_dir")) and not any(
            res.get("num_rollout_protos") for _, res in parts):
        raise ValueError("the shards hold no ScenarioRollouts: run them with submission= or submission_dir= set")
    return finish(cfg_dict, [res for _, res in parts], rollouts)


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
        print(OmegaConf.to_yaml(load_config([])))
        return 0
    if argv and argv[0] == "merge":
        return main_merge(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(argv)
    except Exception as e:  # hydra's override errors name the bad key
        print(f"drope-sim: bad override: {e}", file=sys.stderr)
        return 2
    try:
        check_config(cfg)
        result = run(cfg)
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
