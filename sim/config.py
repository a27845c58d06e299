"""``SimConfig``: the schema of ``configs/sim/default.yaml`` and what drope-sim runs on.

Each section is its component's own dataclass (``bicycle``/``delta`` → the dynamics of that name,
``idm`` → :class:`IDMPolicyConfig`, ``metrics`` → :class:`MetricsConfig`, ``submission_meta`` →
:class:`SubmissionMetadata`), so a default lives in one place. The yaml lists this schema first
and overrides nothing; ``drope-sim key=value`` is merged into it by hydra (bad keys and types are
refused naming the key). The object is frozen and picklable: worker processes receive it whole.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from drope.metrics.submission import SubmissionMetadata
from drope.sim.dynamics import BicycleConfig, DeltaConfig
from drope.sim.events import MetricsConfig
from drope.sim.policies.idm import IDMPolicyConfig
from drope.sim.policies.learned import LearnedConfig

SCHEMA = "sim_schema"  # its name in hydra's ConfigStore (``defaults`` of configs/sim/*.yaml)


@dataclass(frozen=True)
class GenerateScenes:
    """Scenes made in memory by the scenario generator when ``data`` is empty."""

    num_scenes: int = 8  # scene i is generate_scene(seed, i)
    seed: int = 0


@dataclass(frozen=True)
class SimConfig:
    data: list[str] = field(default_factory=list)  # WOMD TFRecord shards (plain/gzip), drope-data caches, AV2 scenario dirs or split roots, globs
    generate: GenerateScenes = field(default_factory=GenerateScenes)  # used when data is empty
    max_scenarios: int | None = None  # cap on the number of scenes (null: all)
    policy: str = "constant_velocity"  # evaluated policy: log_replay | constant_velocity | idm | idm_reference | learned
    background: str = "log_replay"  # the agents not controlled: log_replay | idm
    controlled: str = "all"  # sdc | tracks_to_predict | all (valid at the start step)
    dynamics: str = "bicycle"  # bicycle | delta (settings in the section of that name)
    rollouts: int = 4  # rollouts per scenario (batched in one engine)
    seed: int = 0  # scenario i uses seed * 1000003 + i: identical output for any worker count
    model: str | None = None  # the learned policy: an ONNX file (drope-export; *.onnx) or a drope-train checkpoint (e.g. last.ckpt)
    replan_every: int = 10  # learned policy: steps between predictions (10 = 1 Hz)
    mode: str = "max"  # learned policy: max (most likely mode) | sample (seeded)
    smooth_steps: int = 5  # learned policy: moving average of the plan's per-step displacements (1: off)
    model_rows_per_call: int | None = 1  # learned policy: worlds per model call (null: all rollouts of a replan in one call; pays on a GPU, not on one CPU thread)
    model_providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])  # learned policy: ONNX Runtime execution providers, e.g. [CUDAExecutionProvider,CPUExecutionProvider] with onnxruntime-gpu
    model_device: str = "auto"  # learned policy from a checkpoint: torch device, auto (a GPU when CUDA is available, else cpu) | cpu | cuda (cuda:$LOCAL_RANK) | cuda:N
    out: str = "sim_out"  # output directory, relative to the current directory
    workers: int = 2  # parallel processes (1: in this process)
    animate: int = 1  # animate the first rollout of the first N scenarios
    animation_format: str = "gif"  # gif | mp4 (mp4 needs ffmpeg on PATH; falls back to gif)
    save_rollouts: bool = True  # out/rollouts/<index>_<scenario>.npz
    submission: str | None = None  # FILE: also write an official SimAgentsChallengeSubmission (every sim agent simulated: controlled=all or background=idm; WOSAC wants rollouts=32)
    submission_dir: str | None = None  # DIR: the official sharded form DIR/submission.binproto-*-of-* plus DIR/submission.tar.gz (the file to upload)
    submission_shard_size: int = 200  # scenarios per shard: <= 32 rollouts x 128 agents x 80 steps x 4 float32 ~ 5.2 MB a scenario, <= ~1.1 GB a shard (protobuf limit 2 GB)
    submission_meta: SubmissionMetadata = field(default_factory=SubmissionMetadata)  # the submission header (placeholders)
    wosac: bool = False  # score every scenario in-process with the official WOSAC metrics (same rules as submission)
    num_shards: int | None = None  # N: simulate scenarios i = shard_index (mod N) into out/shards/ (null: $WORLD_SIZE or 1)
    shard_index: int | None = None  # I in [0, N) (null: $RANK or 0); then drope-sim merge OUT
    bicycle: BicycleConfig = field(default_factory=BicycleConfig)  # dynamics=bicycle
    delta: DeltaConfig = field(default_factory=DeltaConfig)  # dynamics=delta
    idm: IDMPolicyConfig = field(default_factory=IDMPolicyConfig)  # policy or background idm / idm_reference
    metrics: MetricsConfig = field(default_factory=MetricsConfig)  # closed-loop metrics (drope.sim.events)

    @property
    def learned(self) -> LearnedConfig:
        """The learned policy's settings (top-level keys, as documented for the command line)."""
        return LearnedConfig(replan_every=self.replan_every, mode=self.mode, smooth_steps=self.smooth_steps)

    @property
    def dynamics_config(self):
        """The section named by ``dynamics`` (each dynamics model's config is the section of its name)."""
        return getattr(self, self.dynamics)
