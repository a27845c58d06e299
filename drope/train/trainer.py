"""Training loop: AdamW + warmup/cosine, clipping, deterministic CPU runs, DDP, atomic checkpoints,
exact resume (``resume=auto``), TensorBoard + CSV logs, periodic validation.

Batches are a pure function of (seed, step): the sample order of epoch ``e`` is a permutation
drawn from ``torch.Generator().manual_seed(seed + e)``, so a resumed run needs only the step
number (plus model/optimiser/scheduler/RNG states) to continue exactly.
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
from typing import Sequence

import numpy as np
import torch

from drope.data.batch import SceneBatch, collate_scenes, stack_batches
from drope.data.scene import Scene
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
    bf16: bool = True  # autocast on CUDA only; rotary math stays fp32 inside the encodings
    max_agents: int = 64
    max_map: int = 384
    stop_after: int | None = None  # stop (as if killed) after this many steps of this process
    progress: bool = True
    loss: LossWeights = field(default_factory=LossWeights)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # closed-loop robustness (drope.train.augment)
    num_workers: int = 0  # DataLoader workers decoding/collating streamed (drope.data.stream) batches


def lr_lambda(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    p = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> list[int]:
    """Sample indices of global step ``step`` (epochs reshuffled deterministically)."""
    out = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, off = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
        take = min(batch_size - len(out), n - off)
        out += perm[off : off + take]
        pos += take
    return out


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
    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, train: Sequence[Scene], val: Sequence[Scene],
                 resolved_config: dict | None = None) -> None:
        if not train:
            raise ValueError("no training scenes")
        self.cfg, self.model_cfg = cfg, model_cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
        if cfg.device == "auto":
            dev = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        else:
            dev = cfg.device
        self.device = torch.device(dev)
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
        # map-style datasets (drope.data.stream) stay lazy: one scene decoded per access, not cached
        self.train = train if isinstance(train, torch.utils.data.Dataset) else list(train)
        self.val = val if isinstance(val, torch.utils.data.Dataset) else list(val)
        self.out = Path(cfg.out)
        self.step = 0
        self._cache: dict[tuple[str, int, int], SceneBatch] = {}
        self._steps: dict[int, list[int]] = {}  # usable augmentation current steps per training scene
        self.resolved = resolved_config or {}
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        self._maybe_resume()

    # ---- checkpoints ---------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.out / "last.ckpt"

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
        _set_rng_state(ckpt["rng"])
        self._truncate_log()
        log.info("resumed from %s at step %d", path, self.step)

    def _truncate_log(self) -> None:
        """Drop CSV rows written after the checkpoint (the resumed run writes them again)."""
        f = self.out / "metrics.csv"
        if self.rank != 0 or not f.exists():
            return
        rows = list(csv.reader(f.open(newline="")))
        keep = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= self.step]
        with f.open("w", newline="") as fh:
            csv.writer(fh).writerows(keep)

    def save(self) -> None:
        if self.rank != 0:
            return
        payload = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                   "scheduler": self.sched.state_dict(), "step": self.step, "rng": _rng_state(),
                   "model_config": self.model_cfg.to_dict(), "config": self.resolved}
        save_checkpoint(self.ckpt_path, payload)
        from omegaconf import OmegaConf

        (self.out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(self.resolved or {})))

    # ---- batches ---------------------------------------------------------------------------------
    def _collate_one(self, scene: Scene) -> SceneBatch:
        return collate_scenes([scene], self.model_cfg.history, self.model_cfg.future, self.cfg.max_agents,
                              self.cfg.max_map, segment_points=self.model_cfg.map_points)

    def _cached(self, split: str, i: int, t: int = -1) -> SceneBatch:
        """Scene (at current step ``t``; -1: its own) → padded tensors once (map splitting is the
        costly part), reused every epoch."""
        key = (split, i, t)
        src = self.train if split == "train" else self.val
        if isinstance(src, torch.utils.data.Dataset):  # streamed: decode + collate per access
            scene = src[i]
            if scene is None:  # corrupt record (counted and logged by the dataset)
                return None
            return self._collate_one(scene if t < 0 else at_step(scene, t))
        if key not in self._cache:
            scene = src[i]
            self._cache[key] = self._collate_one(scene if t < 0 else at_step(scene, t))
        return self._cache[key]

    def _current_steps(self, idx: list[int], step: int | None = None) -> list[int]:
        """Current step per sample of this step (``augment.current_steps``; -1 = the scene's own),
        drawn from the (seed, step) generator so batches stay a pure function of (seed, step)."""
        cands = list(self.cfg.augment.current_steps)
        if not cands:
            return [-1] * len(idx)
        gen = sample_generator(self.cfg.seed, self.step if step is None else step)
        u = torch.rand(len(idx), generator=gen).tolist()
        out = []
        for i, r in zip(idx, u):
            if i not in self._steps:
                scene = self.train[i]
                self._steps[i] = (usable_steps(scene, cands, self.model_cfg.history) if scene is not None else []) or [-1]
            opts = self._steps[i]
            out.append(opts[min(int(r * len(opts)), len(opts) - 1)])
        return out

    def train_batch(self) -> SceneBatch:
        """This rank's batch of the current step, augmented (a pure function of (seed, step))."""
        return self.cpu_batch(self.step).to(self.device)

    def cpu_batch(self, step: int) -> SceneBatch:
        """This rank's batch of global step ``step`` on the CPU (what DataLoader workers build)."""
        cfg = self.cfg
        idx = batch_indices(step, len(self.train), cfg.batch_size * self.world, cfg.seed)
        ts = self._current_steps(idx, step)
        idx, ts = idx[self.rank :: self.world], ts[self.rank :: self.world]
        parts = [b for b in (self._cached("train", i, t) for i, t in zip(idx, ts)) if b is not None]
        if not parts:
            raise RuntimeError(f"step {step}: every record of this rank's batch is corrupt")
        batch = stack_batches(parts)
        if cfg.augment.perturbs:
            batch = perturb_history(batch, cfg.augment, sample_generator(cfg.seed, step, salt=1 + self.rank))
        return batch

    def _train_batches(self):
        """Batches from ``self.step`` on. Streamed data with ``num_workers > 0`` is decoded and
        collated in DataLoader workers; resuming skips steps on indices (the sampler starts at
        ``self.step``), so batches stay a pure function of (seed, step)."""
        if not (self.cfg.num_workers > 0 and isinstance(self.train, torch.utils.data.Dataset)):
            while True:
                yield self.train_batch()
        loader = torch.utils.data.DataLoader(
            _StepBatches(self), batch_size=None, sampler=range(self.step, self.cfg.steps),
            num_workers=self.cfg.num_workers, pin_memory=self.device.type == "cuda")
        for b in loader:
            yield b.to(self.device)

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
                csv_w.writerow(["step", "split", "loss", "nll", "heading", "cls", "min_ade", "lr", "scenes_per_s"])
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step",
                   disable=not cfg.progress or self.rank != 0)
        ran, t0, last = 0, time.perf_counter(), {}
        amp = self.device.type == "cuda" and cfg.bf16
        self.model.train()
        batches = self._train_batches()
        while self.step < cfg.steps:
            if cfg.stop_after is not None and ran >= cfg.stop_after:
                break
            batch = next(batches)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
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
            if self.rank == 0 and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                sps = ran * cfg.batch_size * self.world / (time.perf_counter() - t0)
                lr = self.sched.get_last_lr()[0]
                for k, v in last.items():
                    writer.add_scalar(f"train/{k}", v, self.step)
                csv_w.writerow([self.step, "train", *(f"{last[k]:.5f}" for k in ("loss", "nll", "heading", "cls", "min_ade")),
                                f"{lr:.6g}", f"{sps:.2f}"])
                bar.set_postfix(loss=f"{last['loss']:.3f}", minADE=f"{last['min_ade']:.2f}")
                csv_file.flush()  # readable while the run goes on (and after a kill)
            if self.val and self.rank == 0 and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                v = self.validate()
                writer.add_scalar("val/min_ade6", v["min_ade@6"], self.step)
                csv_w.writerow([self.step, "val", "", "", "", "", f"{v['min_ade@6']:.5f}", "", ""])
                self.model.train()
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                self.save()
        bar.close()
        if self.rank == 0:
            writer.close()
            csv_file.close()
        elapsed = time.perf_counter() - t0
        return {"step": self.step, "train": last, "seconds": elapsed,
                "scenes_per_s": ran * cfg.batch_size * self.world / max(elapsed, 1e-9)}

    @torch.no_grad()
    def validate(self, scenes: Sequence[Scene] | None = None) -> dict:
        from drope.eval.metrics import displacement_metrics

        self.model.eval()
        n = len(self.val) if scenes is None else len(scenes)
        vals = []
        for i in range(0, n, self.cfg.batch_size):
            chunk = range(i, min(i + self.cfg.batch_size, n))
            if scenes is None:
                parts = [b for b in (self._cached("val", j) for j in chunk) if b is not None]
                if not parts:
                    continue
                b = stack_batches(parts).to(self.device)
            else:
                b = self._batch([scenes[j] for j in chunk])
            xy, prob = predict_scene_frame(self.model, b)
            m = b.agent_mask & b.agent_valid[:, :, -1]
            r = displacement_metrics(xy[m], prob[m], b.future_pos[m], b.future_valid[m], k=6, horizon=80)
            vals.append(r["min_ade"][~torch.isnan(r["min_ade"])])
        allv = torch.cat(vals) if vals else torch.zeros(0)
        return {"min_ade@6": float(allv.mean()) if allv.numel() else float("nan")}


class _StepBatches(torch.utils.data.Dataset):
    """Item ``s``: the trainer's CPU batch of step ``s`` (workers are forked; no model use)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def __len__(self) -> int:
        return self.trainer.cfg.steps

    def __getitem__(self, step: int) -> SceneBatch:
        return self.trainer.cpu_batch(step)
