"""Each hydra CLI's dataclass is its schema: the yaml cannot disagree with the dataclass defaults,
documented override syntax still works, bad keys and types are refused naming the key."""
from __future__ import annotations

import dataclasses
import pickle

import pytest
import yaml

from drope.configs import config_dir
from drope.configs.schema import ConfigError, as_dict, describe, field_comments


def test_default_yaml_of_every_cli_is_its_dataclass():
    from drope.export.cli import ExportConfig
    from drope.export.cli import load_config as export_config
    from drope.model import ModelConfig
    from drope.sim.cli import SimConfig
    from drope.sim.cli import load_config as sim_config
    from drope.sim.generate.cli import GenerateConfig
    from drope.sim.generate.cli import load_config as generate_config
    from drope.train.cli import load_config as train_config
    from drope.train.cli import typed
    from drope.train.config import TrainData
    from drope.train.trainer import TrainConfig

    assert sim_config([]) == SimConfig()
    assert export_config([]) == ExportConfig()
    assert generate_config([]) == GenerateConfig()
    run = typed(train_config([]))
    assert run.model == ModelConfig() and run.data == TrainData()
    # train.yaml sets only num_workers, as an interpolation of data.num_workers
    assert run.trainer_config() == dataclasses.replace(TrainConfig(), num_workers=TrainData().num_workers)
    assert typed(train_config(["data.num_workers=0"])).trainer_config().num_workers == 0


def test_component_group_yaml_equals_the_dataclass():
    """Config groups not composed by a CLI schema are checked here: every encoding yaml is the
    EncodingConfig of its name."""
    from drope.nn.encodings import EncodingConfig

    for path in sorted(config_dir("encoding").glob("*.yaml")):
        assert yaml.safe_load(path.read_text()) == EncodingConfig(name=path.stem).to_dict(), path.name


def test_documented_override_syntax_gives_typed_values(tmp_path):
    from drope.metrics.submission import SubmissionMetadata
    from drope.sim.cli import load_config as sim_config
    from drope.train.cli import load_config as train_config
    from drope.train.cli import typed

    c = sim_config(["policy=idm", "rollouts=32", f"submission_dir={tmp_path}", "idm.lookahead=70",
                    "bicycle.max_accel=4", "generate.num_scenes=3", "data=[a.tfrecord,b]", "submission_meta.authors=[A]"])
    assert (c.policy, c.rollouts, c.submission_dir, c.idm.lookahead, c.bicycle.max_accel) == ("idm", 32, str(tmp_path), 70.0, 4.0)
    assert c.generate.num_scenes == 3 and c.data == ["a.tfrecord", "b"]
    assert c.submission_meta == SubmissionMetadata(authors=("A",))
    r = typed(train_config(["data.train=[x,y]", "data.num_workers=2", "model=drope_base", "model.encoding.name=rpe",
                            "model.features.future=60", "augment.current_steps=[10,20]", "steps=5"]))
    assert r.data.train == ["x", "y"] and r.model.dim == 256 and r.model.encoding.name == "rpe"
    assert r.model.features.future == 60 and r.augment.current_steps == [10, 20] and r.steps == 5


@pytest.mark.parametrize("cli,args,key", [
    ("sim", ["rollouts=many"], "rollouts"),
    ("sim", ["idm.look_ahead=3"], "idm.look_ahead"),
    ("sim", ["submission_meta.team=x"], "submission_meta.team"),
    ("train", ["model.features.horizon=60"], "model.features.horizon"),
    ("train", ["lr=fast"], "lr"),
    ("export", ["int8.per_chanel=true"], "int8.per_chanel"),
    ("generate", ["generator.traffic.vehicle_rate=lots"], "generator.traffic.vehicle_rate"),
])
def test_bad_key_or_type_is_refused_naming_the_key(cli, args, key, capsys):
    mains = {"sim": "drope.sim.cli", "train": "drope.train.cli", "export": "drope.export.cli",
             "generate": "drope.sim.generate.cli"}
    import importlib

    assert importlib.import_module(mains[cli]).main(args) == 2
    err = capsys.readouterr().err
    assert f"full_key: {key}" in err and "bad config or override" in err


def test_dataclass_checks_run_on_the_composed_config():
    from drope.train.cli import load_config, typed

    with pytest.raises(ConfigError, match="features.history"):
        typed(load_config(["model.features.history=0"]))
    with pytest.raises(ConfigError, match="perturb_prob"):
        typed(load_config(["augment.perturb_prob=2"]))


def test_sim_config_is_picklable_and_round_trips_through_its_record():
    from drope.sim.cli import config_from_dict, load_config

    c = load_config(["policy=idm", "idm.lookahead=70", "submission_meta.authors=[A,B]", "data=[x]"])
    assert pickle.loads(pickle.dumps(c)) == c  # what worker processes receive
    assert config_from_dict(as_dict(c)) == c  # what merge reads back from a shard's metrics.json
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.rollouts = 3
    with pytest.raises(ConfigError, match="nope"):
        config_from_dict({**as_dict(c), "nope": 1})


def test_every_registered_policy_builds_from_the_config(tmp_path):
    """build_policies goes through the factory registry: every policy name builds, with its section."""
    from drope.sim.cli import build_dynamics_from, build_policies, load_config
    from drope.sim.policies import POLICIES

    for name in POLICIES.names():
        if name == "learned":
            continue  # needs an ONNX model; tests/test_sim_cli.py runs it
        c = load_config([f"policy={name}", "idm.lookahead=33", "dynamics=delta", "delta.max_step=2"])
        dyn = build_dynamics_from(c)
        assert dyn.cfg.max_step == 2.0
        policy, background = build_policies(c, dyn)
        assert isinstance(policy, POLICIES.get(name)) and isinstance(background, POLICIES.get("log_replay"))
        if name.startswith("idm"):
            assert policy.cfg.lookahead == 33.0


def test_help_lists_every_key_with_its_default_and_comment(capsys):
    from drope.sim.cli import SimConfig
    from drope.sim.cli import main as sim
    from drope.train.cli import main as train

    assert sim(["--help"]) == 0
    out = capsys.readouterr().out
    assert "rollouts: 4  # rollouts per scenario" in out and "  lookahead: 60.0" in out
    assert all(f"\n{f.name}:" in out for f in dataclasses.fields(SimConfig))
    assert train(["--help", "model=drope_base"]) == 0
    out = capsys.readouterr().out
    assert "  dim: 256" in out and "num_workers: 2  # DataLoader workers" in out
    from drope.train.config import TrainRun

    assert field_comments(TrainRun)["resume"] == "none | auto | PATH"  # inherited from TrainConfig
    assert describe(SimConfig()).count("\n") >= len(dataclasses.fields(SimConfig))
