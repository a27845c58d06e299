"""Model yaml mirrors the dataclass; drope-train/drope-eval CLIs run end to end on tiny budgets."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from drope.model import ModelConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_model_yaml_mirrors_dataclass():
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    for name in ("drope_small", "drope_base"):
        d = yaml.safe_load((CONFIGS / "model" / f"{name}.yaml").read_text())
        assert set(d) == names and d["name"] == name
        ModelConfig.from_dict(d)


def test_train_and_eval_clis(tmp_path, capsys):
    from drope.eval.cli import main as eval_main
    from drope.train.cli import main as train_main

    out = tmp_path / "run"
    rc = train_main([f"out={out}", "steps=3", "batch_size=2", "data.generate_train=4", "data.generate_val=2",
                     "model.dim=32", "model.num_blocks=1", "progress=false", "model.encoding.name=rpe"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["step"] == 3 and "min_ade@6" in res["val"]
    assert (out / "last.ckpt").exists() and "rpe" in (out / "config.yaml").read_text()
    rc = eval_main(["--ckpt", str(out / "last.ckpt"), "--num-scenes", "3", "--out", str(tmp_path / "ev"), "--plots", "1"])
    assert rc == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(m) == {"drope", "constant_velocity", "constant_turn_rate"}
    assert m["drope"]["ALL"]["8s"]["min_ade@6"] is not None
    assert len(list((tmp_path / "ev" / "plots").glob("*.png"))) == 1
    assert train_main(["data.train=[nope/*.tfrecord]"]) == 2
