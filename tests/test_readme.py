"""The README's example runs as written (on the shared WOMD scene and a hand-built ONNX file), and every
console script and `drope-bench` subcommand it names exists: the first page users copy from stays true."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from drope.bench.free_model import free_onnx_model

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_readme_example_runs(womd_path, tmp_path, capsys):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    model = free_onnx_model(tmp_path / "model.onnx")
    assert '"scenario.tfrecord"' in code and '"model.onnx"' in code and "num_rollouts=32" in code
    code = (code.replace('"scenario.tfrecord"', repr(str(womd_path))).replace('"model.onnx"', repr(str(model)))
            .replace("num_rollouts=32", "num_rollouts=2"))  # the example's 32 rollouts, cut for test time
    exec(compile(code, "README.md example", "exec"), {})
    out = capsys.readouterr().out
    assert "collision_rate" in out and "excess_collision_rate" in out


def test_readme_names_only_existing_commands():
    scripts = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])
    named = set(re.findall(r"\b(drope-[a-z-]+[a-z])\b(?![.\w])", README))  # not drope-index.json
    assert named and named <= scripts, named - scripts
    from drope.bench.cli import SUBCOMMANDS

    subs = set(re.findall(r"drope-bench ([a-z-]+)", README)) | set(
        re.search(r"drope-bench ([a-z|\\-]+)`", README).group(1).replace("\\", "").split("|"))
    assert subs <= set(SUBCOMMANDS), subs - set(SUBCOMMANDS)
