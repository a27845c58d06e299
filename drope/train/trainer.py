"""Training loop: AdamW + warmup/cosine, clipping, deterministic CPU runs, DDP, atomic checkpoints,
exact resume (``resume=auto``), TensorBoard + CSV logs, periodic validation.

Data comes through the dataset layer (:mod:`drope.data.stream`): a streamed
:class:`~drope.data.stream.SceneStreamDataset` or in-memory scenes (wrapped by ``as_dataset``).
Samples per step come from :class:`drope.data.stream.StepSampler`: across DDP ranks every epoch
visits every scene exactly once (no padding, no drop; when ``batch_size·world`` does not divide the
dataset, an epoch's last global batch is completed with the head of the next epoch's permutation),
and DataLoader workers (``num_workers``) build whole steps, so every (rank, worker) gets a disjoint
part. Batches are a pure function of (seed, step), so a resumed run needs only the step number
(plus model/optimiser/scheduler/RNG states) to continue exactly, with or without workers.

Corrupt records are skipped (dropped from their batch), counted on every rank and summed over
ranks (``all_reduce``) into the ``corrupt`` column of metrics.csv (cumulative, kept in checkpoints).
``precision``: ``fp32`` or ``bf16`` (``torch.autocast`` with bfloat16; positions stay float32 and
the rotary angles/cos/sin are computed in fp32 inside the encodings).
"""
from __future__ import annotations

import csv
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from drope.data.batch import SceneBatch, stack_batches
from drope.data.scene import Scene
from drope.data.stream import CollateSkipNone, SceneCollate, StepSampler, as_dataset, make_loader
from drope.device import resolve_device
from drope.model import ModelConfig, build_model
from drope.model.checkpoint import load_model, predict_scene_frame, save_checkpoint  # noqa: F401 (re-exported)
from drope.nn.encodings import no_weight_decay_names
from drope.train.augment import AugmentConfig, at_step, perturb_history, sample_generator, usable_steps
from drope.train.loss import LossWeights, targets_in_agent_frame, wta_loss

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    out: str = "runs/drope_small"
    seed: int = 0
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    grad_clip: float = 1.0
    val_every: int = 100
    log_every: int = 10
    ckpt_every: int = 100
    resume: str = "none"  # none | auto | PATH
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 (autocast; on CPU allowed with a warning); see PRECISIONS
    max_agents: int = 64
    max_map: int = 384
    stop_after: int | None = None  # stop (as if killed) after this many steps of this process
    progress: bool = True
    loss: LossWeights = field(default_factory=LossWeights)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # closed-loop robustness (drope.train.augment)
    num_workers: int = 0  # DataLoader workers decoding/collating streamed (drope.data.stream) batches
    record_samples: bool = False  # write samples.rank<R>.csv (step, epoch, worker, scenario_id) per sample


#: precision name -> autocast dtype (None: no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def lr_lambda(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    p = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


def model_outputs(model, batch: SceneBatch):
    return model(**batch.model_inputs())


def compute_loss(model, batch: SceneBatch, weights: LossWeights) -> dict:
    traj, scale, logits = model_outputs(model, batch)
    gt_xy, gt_h = targets_in_agent_frame(batch.future_pos, batch.future_heading, batch.agent_pos[:, :, -1],
                                         batch.agent_heading[:, :, -1])
    valid = batch.future_valid & batch.agent_mask[..., None] & batch.agent_valid[:, :, -1:]
    return wta_loss(traj, scale, logits, gt_xy, gt_h, valid, weights)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


class Trainer:
    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, train, val, resolved_config: dict | None = None) -> None:
        """``train``/``val``: datasets of :mod:`drope.data.stream` or sequences of scenes."""
        self.train, self.val = as_dataset(train), as_dataset(val)
        if not len(self.train):
            raise ValueError("no training scenes")
        if cfg.precision not in PRECISIONS:
            raise ValueError(f"precision={cfg.precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.cfg, self.model_cfg = cfg, model_cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
        self.device = resolve_device(cfg.device, "device")
        self.amp_dtype = PRECISIONS[cfg.precision]
        if self.amp_dtype is not None and self.device.type == "cpu":
            log.warning("precision=%s on the CPU: autocast runs, but slowly and only for testing; use fp32", cfg.precision)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.model = build_model(model_cfg).to(self.device)
        no_decay = no_weight_decay_names(self.model)
        decay = [p for n, p in self.model.named_parameters() if n not in no_decay and p.dim() > 1]
        other = [p for n, p in self.model.named_parameters() if n in no_decay or p.dim() <= 1]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": other, "weight_decay": 0.0}], lr=cfg.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_lambda(s, cfg.warmup_steps, cfg.steps))
        self.ddp = self.model
        if self.world > 1:
            # self-attention layers leave their context LayerNorm unused: DDP must be told
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.sampler = StepSampler(len(self.train), cfg.batch_size, cfg.seed, self.rank, self.world, stop=cfg.steps)
        self.collate = SceneCollate(model_cfg.history, model_cfg.future, cfg.max_agents, cfg.max_map, model_cfg.map_points)
        self.out = Path(cfg.out)
        self.step = 0
        self.corrupt = 0  # corrupt training records this rank skipped so far (cumulative, checkpointed)
        self._cache: dict[tuple[str, int, int], SceneBatch] = {}  # in-memory data only
        self.resolved = resolved_config or {}
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        self._maybe_resume()

    # ---- checkpoints ---------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.out / "last.ckpt"

    @property
    def samples_path(self) -> Path:
        return self.out / f"samples.rank{self.rank}.csv"

    def _maybe_resume(self) -> None:
        r = self.cfg.resume
        if r == "none":
            return
        path = self.ckpt_path if r == "auto" else Path(r)
        if not path.exists():
            if r == "auto":
                log.info("resume=auto: no checkpoint at %s, starting fresh", path)
                return
            raise FileNotFoundError(f"resume checkpoint not found: {path}")
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        if ckpt.get("model_config") != self.model_cfg.to_dict():
            raise ValueError(f"{path}: checkpoint model config differs from the requested one; use another out=")
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.step = int(ckpt["step"])
        per_rank = ckpt.get("corrupt") or []
        self.corrupt = int(per_rank[self.rank]) if self.rank < len(per_rank) else 0
        _set_rng_state(ckpt["rng"])
        if self.rank == 0:
            _truncate_csv(self.out / "metrics.csv", lambda step: step <= self.step)
        _truncate_csv(self.samples_path, lambda step: step < self.step)
        log.info("resumed from %s at step %d", path, self.step)

    def _gather_corrupt(self) -> list[int]:
        """Every rank's count of skipped training records (a collective: all ranks call it)."""
        if self.world == 1:
            return [self.corrupt]
        t = torch.zeros(self.world, dtype=torch.int64, device=self.device if self.device.type == "cuda" else "cpu")
        t[self.rank] = self.corrupt
        torch.distributed.all_reduce(t)
        return t.tolist()

    def save(self, corrupt: list[int] | None = None) -> None:
        corrupt = corrupt if corrupt is not None else self._gather_corrupt()
        if self.rank != 0:
            return
        payload = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                   "scheduler": self.sched.state_dict(), "step": self.step, "rng": _rng_state(),
                   "model_config": self.model_cfg.to_dict(), "config": self.resolved, "corrupt": corrupt}
        save_checkpoint(self.ckpt_path, payload)
        from omegaconf import OmegaConf

        (self.out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(self.resolved or {})))

    # ---- batches ---------------------------------------------------------------------------------
    def _collate_one(self, scene: Scene) -> SceneBatch:
        return self.collate([scene])

    def _part(self, split: str, i: int, scene: Scene, t: int = -1) -> SceneBatch:
        """Scene (at current step ``t``; -1: its own) → padded tensors. In-memory data caches them
        (map splitting is the costly part) and reuses them every epoch; streamed data does not."""
        src = self.train if split == "train" else self.val
        if not src.in_memory:
            return self._collate_one(scene if t < 0 else at_step(scene, t))
        key = (split, i, t)
        if key not in self._cache:
            self._cache[key] = self._collate_one(scene if t < 0 else at_step(scene, t))
        return self._cache[key]

    def _current_step(self, scene: Scene, u: float | None) -> int:
        """Current step of one sample (``augment.current_steps``, drawn by ``u``; -1 = the scene's own)."""
        if u is None:
            return -1
        opts = usable_steps(scene, self.cfg.augment.current_steps, self.model_cfg.history) or [-1]
        return opts[min(int(u * len(opts)), len(opts) - 1)]

    def train_batch(self) -> SceneBatch:
        """This rank's batch of the current step, augmented (a pure function of (seed, step))."""
        return self.cpu_batch(self.step)[0].to(self.device)

    def cpu_batch(self, step: int) -> tuple[SceneBatch, dict]:
        """This rank's batch of global step ``step`` on the CPU (what DataLoader workers build) and
        what it holds: ``{"step", "epoch", "scenario_id", "worker", "corrupt"}``."""
        cfg = self.cfg
        idx, epochs = self.sampler.batch(step)
        u = [None] * len(idx)
        if cfg.augment.current_steps:
            # drawn for the global batch, then this rank's share: the same draws at any world size
            gen = sample_generator(cfg.seed, step)
            u = torch.rand(len(idx) * self.world, generator=gen).tolist()[self.rank :: self.world]
        parts, ids, eps = [], [], []
        for i, e, r in zip(idx, epochs, u):
            scene = self.train[i]
            if scene is None:  # corrupt record (logged by the dataset, counted by the caller)
                continue
            parts.append(self._part("train", i, scene, self._current_step(scene, r)))
            ids.append(scene.scenario_id)
            eps.append(e)
        info = {"step": step, "epoch": eps, "scenario_id": ids, "corrupt": len(idx) - len(parts),
                "worker": getattr(torch.utils.data.get_worker_info(), "id", -1)}
        if not parts:
            return None, info
        batch = stack_batches(parts)
        if cfg.augment.perturbs:
            batch = perturb_history(batch, cfg.augment, sample_generator(cfg.seed, step, salt=1 + self.rank))
        return batch, info

    def _train_batches(self):
        """``(batch on the device, info)`` from ``self.step`` on. Streamed data with ``num_workers > 0``
        is decoded and collated in DataLoader workers, each building whole steps; resuming starts the
        step sampler at ``self.step``, so batches stay a pure function of (seed, step)."""
        if self.train.in_memory or self.cfg.num_workers <= 0:
            for step in range(self.step, self.cfg.steps):
                b, info = self.cpu_batch(step)
                yield (b.to(self.device) if b is not None else None), info
            return
        self.sampler.start = self.step
        loader = torch.utils.data.DataLoader(
            _StepBatches(self), batch_size=None, sampler=self.sampler, num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda", collate_fn=_keep)
        for b, info in loader:
            yield (b.to(self.device) if b is not None else None), info

    def _batch(self, scenes: Sequence[Scene]) -> SceneBatch:
        return stack_batches([self._collate_one(s) for s in scenes]).to(self.device)

    # ---- loop ----------------------------------------------------------------------------------------
    def fit(self) -> dict:
        from tqdm import tqdm

        cfg = self.cfg
        writer = csv_file = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "tb"))
            new = not (self.out / "metrics.csv").exists()
            csv_file = open(self.out / "metrics.csv", "a", newline="")
            csv_w = csv.writer(csv_file)
            if new:
                csv_w.writerow(["step", "split", "loss", "nll", "heading", "cls", "min_ade", "lr", "scenes_per_s",
                                "corrupt"])
        samples = None
        if cfg.record_samples:
            new = not self.samples_path.exists()
            self.out.mkdir(parents=True, exist_ok=True)  # each rank opens its own file: rank 0 may not have made out/
            samples = open(self.samples_path, "a", newline="")
            samples_w = csv.writer(samples)
            if new:
                samples_w.writerow(["step", "epoch", "worker", "scenario_id"])
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step",
                   disable=not cfg.progress or self.rank != 0)
        ran, t0, last, reported = 0, time.perf_counter(), {}, sum(self._gather_corrupt())
        self.model.train()
        batches = self._train_batches()
        while self.step < cfg.steps:
            if cfg.stop_after is not None and ran >= cfg.stop_after:
                break
            batch, info = next(batches)
            if batch is None:
                raise RuntimeError(f"step {self.step}: every record of rank {self.rank}'s batch is corrupt")
            self.corrupt += info["corrupt"]
            if samples is not None:
                samples_w.writerows([info["step"], e, info["worker"], sid]
                                    for e, sid in zip(info["epoch"], info["scenario_id"]))
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
                out = compute_loss(self.ddp, batch, cfg.loss)
            self.opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.opt.step()
            self.sched.step()
            self.step += 1
            ran += 1
            bar.update()
            last = {k: float(v.detach()) for k, v in out.items()}
            logging_step = self.step % cfg.log_every == 0 or self.step == cfg.steps
            saving_step = self.step % cfg.ckpt_every == 0 or self.step == cfg.steps
            corrupt = self._gather_corrupt() if (logging_step or saving_step) else None
            if corrupt is not None and sum(corrupt) > reported and self.rank == 0:
                log.warning("step %d: %d corrupt training records skipped so far (all ranks)", self.step, sum(corrupt))
                reported = sum(corrupt)
            if self.rank == 0 and logging_step:
                sps = ran * cfg.batch_size * self.world / (time.perf_counter() - t0)
                lr = self.sched.get_last_lr()[0]
                for k, v in last.items():
                    writer.add_scalar(f"train/{k}", v, self.step)
                csv_w.writerow([self.step, "train", *(f"{last[k]:.5f}" for k in ("loss", "nll", "heading", "cls", "min_ade")),
                                f"{lr:.6g}", f"{sps:.2f}", sum(corrupt)])
                bar.set_postfix(loss=f"{last['loss']:.3f}", minADE=f"{last['min_ade']:.2f}")
                csv_file.flush()  # readable while the run goes on (and after a kill)
            if samples is not None:
                samples.flush()
            if len(self.val) and self.rank == 0 and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                v = self.validate()
                writer.add_scalar("val/min_ade6", v["min_ade@6"], self.step)
                # corrupt column: cumulative over training (train rows), this validation's (val rows)
                csv_w.writerow([self.step, "val", "", "", "", "", f"{v['min_ade@6']:.5f}", "", "", v["corrupt"]])
                self.model.train()
            if saving_step:
                self.save(corrupt)
        bar.close()
        if self.rank == 0:
            writer.close()
            csv_file.close()
        if samples is not None:
            samples.close()
        elapsed = time.perf_counter() - t0
        return {"step": self.step, "train": last, "seconds": elapsed, "corrupt": sum(self._gather_corrupt()),
                "scenes_per_s": ran * cfg.batch_size * self.world / max(elapsed, 1e-9)}

    def _val_batches(self):
        """``(batch, n_corrupt)`` over the validation set in order; streamed data decodes in workers."""
        n, bs = len(self.val), self.cfg.batch_size
        if self.val.in_memory or self.cfg.num_workers <= 0:
            for i in range(0, n, bs):
                scenes = [(j, self.val[j]) for j in range(i, min(i + bs, n))]
                parts = [self._part("val", j, s) for j, s in scenes if s is not None]
                yield (stack_batches(parts) if parts else None), sum(s is None for _, s in scenes)
            return
        collate = CollateSkipNone(self.collate)
        for _, b, bad in make_loader(self.val, bs, num_workers=self.cfg.num_workers, collate_fn=collate, persistent=False):
            yield b, bad

    @torch.no_grad()
    def validate(self, scenes: Sequence[Scene] | None = None) -> dict:
        """minADE@6 on the validation set (or ``scenes``), in fp32 whatever ``precision`` trains with."""
        from drope.eval.displacement import displacement_metrics

        self.model.eval()
        if scenes is not None:
            chunks = ((self._batch(scenes[i : i + self.cfg.batch_size]), 0) for i in range(0, len(scenes), self.cfg.batch_size))
        else:
            chunks = self._val_batches()
        vals, bad = [], 0
        for b, n_bad in chunks:
            bad += n_bad
            if b is None:
                continue
            b = b.to(self.device)
            xy, prob = predict_scene_frame(self.model, b)
            m = b.agent_mask & b.agent_valid[:, :, -1]
            r = displacement_metrics(xy[m], prob[m], b.future_pos[m], b.future_valid[m], k=6, horizon=80)
            vals.append(r["min_ade"][~torch.isnan(r["min_ade"])])
        if bad:
            log.warning("validation: %d corrupt records skipped", bad)
        allv = torch.cat(vals) if vals else torch.zeros(0)
        return {"min_ade@6": float(allv.mean()) if allv.numel() else float("nan"), "corrupt": bad}


def _truncate_csv(f: Path, keep: Callable[[int], bool]) -> None:
    """Drop the rows of a step-keyed CSV that a resumed run writes again."""
    if not f.exists():
        return
    rows = list(csv.reader(f.open(newline="")))
    kept = rows[:1] + [r for r in rows[1:] if r and keep(int(r[0]))]
    with f.open("w", newline="") as fh:
        csv.writer(fh).writerows(kept)


def _keep(item):
    return item


class _StepBatches(torch.utils.data.Dataset):
    """Item ``s``: the trainer's CPU batch of step ``s`` and its info (workers are forked; no model use)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def __len__(self) -> int:
        return self.trainer.cfg.steps

    def __getitem__(self, step: int):
        return self.trainer.cpu_batch(step)
