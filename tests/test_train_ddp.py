"""DDP through torchrun: two CPU processes (gloo) train a tiny model; rank 0 alone checkpoints; with
streamed data and 2 DataLoader workers per rank, one epoch visits every scene exactly once."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _torchrun(args: list[str], timeout: float = 90) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "drope.train.cli", "model.dim=32", "model.num_blocks=1", "progress=false", *args]
    # own session: on timeout the whole group (torchrun, its ranks and their workers) is killed, no orphans
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    return stdout


def test_torchrun_two_cpu_ranks(tmp_path):
    out = tmp_path / "run"
    stdout = _torchrun([f"out={out}", "steps=3", "batch_size=1", "data.generate_train=4", "data.generate_val=1",
                        "ckpt_every=2"])
    result = json.loads(stdout[stdout.index("{"):])  # rank 0 prints once
    assert result["step"] == 3 and "val" in result
    ckpt = torch.load(out / "last.ckpt", weights_only=False)
    assert ckpt["step"] == 3 and not any(k.startswith("module.") for k in ckpt["model"])


def test_torchrun_epoch_visits_every_scene_once_with_two_workers_per_rank(tmp_path, gen_scenes):
    """4 cached scenes + a shard of 2 (one corrupt); 2 ranks x batch 2 = 4 per step, 2 steps: epoch 0
    is positions 0-5 (it ends inside step 1, whose last 2 samples open epoch 1). Each rank's 2
    workers build one step each; the corrupt record is skipped and counted over both ranks."""
    from drope.data.cache import save_scenes
    from drope.data.stream import SceneStreamDataset
    from drope.data.womd import write_scenarios

    (tmp_path / "data").mkdir()
    save_scenes(tmp_path / "data" / "a.scenes.npz", gen_scenes[:4])
    shard = tmp_path / "b.tfrecord"
    write_scenarios(shard, gen_scenes[4:])
    _, _, off, n = SceneStreamDataset(str(shard)).locate(1)
    raw = bytearray(shard.read_bytes())
    raw[off + 12 + n // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    out = tmp_path / "run"
    stdout = _torchrun([f"out={out}", "steps=2", "batch_size=2", f"data.train=[{tmp_path / 'data'},{shard}]",
                        "data.generate_val=0", "data.num_workers=2", "record_samples=true", "log_every=1"])
    rows = {r: list(csv.DictReader((out / f"samples.rank{r}.csv").open())) for r in (0, 1)}
    for r, rs in rows.items():
        assert {x["worker"] for x in rs} == {"0", "1"}, (r, rs)  # 2 workers, whole steps each
    seen = [x for rs in rows.values() for x in rs]
    epoch0 = [x["scenario_id"] for x in seen if x["epoch"] == "0"]
    assert sorted(epoch0) == sorted(s.scenario_id for s in gen_scenes[:5])  # every readable scene once, none twice
    epoch1 = [x["scenario_id"] for x in seen if x["epoch"] == "1"]
    assert len(set(epoch1)) == len(epoch1) and set(epoch1) <= {s.scenario_id for s in gen_scenes}
    corrupt = json.loads(stdout[stdout.index("{"):])["corrupt"]
    assert corrupt >= 1 and corrupt == 8 - len(seen)  # summed over ranks: every skipped sample counted once
    header, *lines = (out / "metrics.csv").read_text().splitlines()
    assert header.endswith(",corrupt") and lines[-1].endswith(f",{corrupt}")
