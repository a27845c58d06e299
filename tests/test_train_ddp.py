"""DDP through torchrun: two CPU processes (gloo) train a tiny model; rank 0 alone checkpoints."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def test_torchrun_two_cpu_ranks(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "drope.train.cli", f"out={out}", "steps=3", "batch_size=1", "data.generate_train=4",
           "data.generate_val=1", "model.dim=32", "model.num_blocks=1", "progress=false", "ckpt_every=2"]
    # own session: on timeout the whole group (torchrun and its ranks) is killed, no orphans
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    result = json.loads(stdout[stdout.index("{"):])  # rank 0 prints once
    assert result["step"] == 3 and "val" in result
    ckpt = torch.load(out / "last.ckpt", weights_only=False)
    assert ckpt["step"] == 3 and not any(k.startswith("module.") for k in ckpt["model"])
