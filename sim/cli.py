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
    if c.submission is not None or c.submission_dir is not None:
        from drope.sim.submission import submission_rule_violation

        key = f"submission={c.submission}" if c.submission is not None else f"submission_dir={c.submission_dir}"
        if (why := submission_rule_violation(c.policy, c.background, c.controlled)) is not None:
            raise ValueError(f"{key}: {why}")
        if c.rollouts != OFFICIAL_ROLLOUTS:
            log.warning("submission with rollouts=%d: the official sim-agents challenge needs rollouts=%d "
                        "(drope-score wosac --rollouts-per-scenario %d scores it anyway)", c.rollouts,
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


def load_scenes(cfg) -> list:
    """Scenes from ``cfg.data`` shards (real or generated), else generated in memory."""
    limit = cfg.max_scenarios
    if cfg.data:
        from drope.data.womd import read_scenarios

        scenes = []
        for scene in read_scenarios(_shards(cfg.data)):
            scenes.append(scene)
            if limit is not None and len(scenes) >= limit:
                break
        return scenes
    from drope.sim.generate.scenario import generate_scene

    n = cfg.generate.num_scenes if limit is None else min(limit, cfg.generate.num_scenes)
    return [generate_scene(int(cfg.generate.seed), i)[0] for i in range(n)]


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
    if cfg.get("submission") or cfg.get("submission_dir"):
        from drope.sim.submission import REPLAY_POLICIES, sim_scenario_rollouts

        replayed = torch.where(controlled, cfg.policy in REPLAY_POLICIES, cfg.background in REPLAY_POLICIES)
        proto = sim_scenario_rollouts(scene, ro, replayed).SerializeToString()
    return entry, (ro, m) if want_arrays else None, proto


def _worker(args):
    cfg_dict, scene, index = args
    cfg = OmegaConf.create(cfg_dict)
    entry, _, proto = simulate_scene(cfg, scene, index)
    return index, entry, proto


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
def run(cfg) -> dict:
    """Run the configured simulation; returns the metrics.json content."""
    from tqdm import tqdm

    from drope.sim.metrics import aggregate

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    scenes = load_scenes(cfg)
    if not scenes:
        raise ValueError("no scenes to simulate (empty data files or generate.num_scenes=0)")
    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    cfg_dict["out"] = str(out.resolve())
    entries: dict[int, dict] = {}
    protos: dict[int, bytes | None] = {}
    t0 = time.perf_counter()
    workers = max(1, min(int(cfg.workers), len(scenes)))
    if workers == 1:
        for i, scene in enumerate(tqdm(scenes, desc="drope-sim", unit="scene")):
            entries[i], _, protos[i] = simulate_scene(OmegaConf.create(cfg_dict), scene, i)
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_worker, (cfg_dict, s, i)) for i, s in enumerate(scenes)]
            for f in tqdm(as_completed(futures), total=len(futures), desc="drope-sim", unit="scene"):
                i, entries[i], protos[i] = f.result()
    ordered = [entries[i] for i in range(len(scenes))]
    agg = aggregate(ordered)
    agg["wall_seconds"] = time.perf_counter() - t0
    result = {"config": cfg_dict, "aggregate": agg, "scenarios": ordered}
    if cfg.submission:
        from waymo_open_dataset.protos.sim_agents_submission_pb2 import ScenarioRollouts

        from drope.metrics.submission import write_sim_agents_submission

        try:  # workers send serialized protos (cheap to pickle); parsed once here
            n = write_sim_agents_submission(cfg.submission, (ScenarioRollouts.FromString(protos[i]) for i in range(len(scenes))),
                                            submission_metadata(cfg))
        except OSError as e:
            raise ValueError(f"submission={cfg.submission}: {e}") from e
        result["submission"] = {"path": str(Path(cfg.submission).resolve()), "scenarios": n,
                                "rollouts_per_scenario": int(cfg.rollouts)}
        log.info("SimAgentsChallengeSubmission: %d scenarios x %d rollouts -> %s", n, cfg.rollouts, cfg.submission)
    if cfg.get("submission_dir"):
        from waymo_open_dataset.protos.sim_agents_submission_pb2 import ScenarioRollouts

        from drope.metrics.submission import write_sim_agents_submission_shards

        try:  # parsed lazily, one shard's worth at a time
            shards, tar_path = write_sim_agents_submission_shards(
                cfg.submission_dir, (ScenarioRollouts.FromString(protos[i]) for i in range(len(scenes))),
                submission_metadata(cfg), shard_size=int(cfg.submission_shard_size))
        except OSError as e:
            raise ValueError(f"submission_dir={cfg.submission_dir}: {e}") from e
        result["submission_shards"] = {"dir": str(Path(cfg.submission_dir).resolve()), "scenarios": len(scenes),
                                       "shards": [p.name for p in shards], "tar": str(tar_path.resolve()),
                                       "rollouts_per_scenario": int(cfg.rollouts)}
        log.info("SimAgentsChallengeSubmission: %d scenarios in %d shards -> %s", len(scenes), len(shards), tar_path)
    animations = []
    for i, scene in enumerate(scenes[: int(cfg.animate)]):
        _, (ro, m), _ = simulate_scene(OmegaConf.create({**cfg_dict, "save_rollouts": False, "submission": None, "submission_dir": None}), scene, i,
                                       want_arrays=True)
        from drope.sim.animate import animate_rollout

        (out / "animations").mkdir(exist_ok=True)
        info = animate_rollout(scene, ro, m, out / "animations" / f"{i:05d}_{scene.scenario_id}.{cfg.animation_format}")
        animations.append(info)
        log.info("animation %s: %d frames, %.3f s/frame", info["path"], info["frames"], info["seconds_per_frame"])
    result["animations"] = animations
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print(OmegaConf.to_yaml(load_config([])))
        return 0
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
    print(format_table(result["scenarios"], result["aggregate"]))
    if "submission" in result:
        print(f"SimAgentsChallengeSubmission ({result['submission']['scenarios']} scenarios x {cfg.rollouts} rollouts) "
              f"-> {cfg.submission}")
    if "submission_shards" in result:
        sh = result["submission_shards"]
        print(f"SimAgentsChallengeSubmission ({sh['scenarios']} scenarios in {len(sh['shards'])} shards) -> {sh['tar']}")
    print(f"\n{result['aggregate']['num_rollouts']} rollouts of {len(result['scenarios'])} scenarios "
          f"({cfg.policy} on {cfg.controlled}, background {cfg.background}) -> {Path(cfg.out) / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
