"""Model yaml cannot drift from the dataclass; drope-train/drope-eval CLIs run end to end on tiny budgets."""
from __future__ import annotations

import dataclasses
import json

import pytest
from omegaconf import OmegaConf

from drope.configs import config_dir
from drope.data.features import DATASET_FEATURES
from drope.model import ModelConfig

# Every value in which a model yaml differs from the ModelConfig defaults, on purpose. A yaml value
# not listed here must equal the dataclass default, so changing a default without its yaml (or the
# other way round) fails here.
INTENDED = {
    "drope_small": {},
    "drope_base": {"dim": 256, "num_heads": 8, "num_blocks": 4, "map_layers": 2, "ff_mult": 4, "dropout": 0.1},
    "drope_small_av2": {"features": DATASET_FEATURES.get("av2")},
}


def _compose(name: str) -> dict:
    from drope.train.cli import load_config

    return OmegaConf.to_container(load_config([f"model={name}"]).model, resolve=True)


def test_every_model_yaml_equals_the_dataclass_plus_its_intended_overrides():
    assert {p.stem for p in config_dir("model").glob("*.yaml")} == set(INTENDED)
    for name, overrides in INTENDED.items():
        want = dataclasses.replace(ModelConfig(), name=name, **overrides)
        d = _compose(name)
        assert d == want.to_dict(), name  # every key, nested ones included (encoding, features)
        assert ModelConfig.from_dict(d) == want


def test_a_changed_default_would_be_caught():
    d = _compose("drope_small")
    d["features"]["future"] = 60
    assert ModelConfig.from_dict(d) != ModelConfig()
    with pytest.raises(ValueError, match="model_config.features: unknown key"):
        ModelConfig.from_dict({**d, "features": {**d["features"], "horizon": 60}})


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
