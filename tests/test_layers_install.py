"""Package layering, a regular (non-editable) install, and checkpoint errors."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from drope.model.checkpoint import load_model

REPO = Path(__file__).resolve().parents[1]
LIBRARY = ["data", "nn", "model", "metrics", "viz", "train", "eval"]


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("layer", LIBRARY)
def test_library_layers_import_neither_simulator_nor_export(layer):
    bad = {}
    for f in sorted((REPO / "drope" / layer).rglob("*.py")):
        hits = {m for m in _imports(f) if m.split(".")[:2] in (["drope", "sim"], ["drope", "export"])
                or m.split(".")[0] in ("sim", "export")}
        if layer == "eval":
            hits |= {m for m in _imports(f) if m.startswith("drope.train")}
        if hits:
            bad[str(f.relative_to(REPO))] = sorted(hits)
    assert not bad, bad


def test_layering_check_catches_a_violation(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from drope.sim.generate import scenario\n")
    assert "drope.sim.generate" in _imports(f)


def test_garbage_checkpoint_is_a_named_error(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"this is not a checkpoint\x00\x01")
    with pytest.raises(ValueError, match="junk.ckpt: not a drope checkpoint"):
        load_model(junk)
    other = tmp_path / "dict.ckpt"
    torch.save({"weights": 1}, other)
    with pytest.raises(ValueError, match="dict.ckpt: not a drope checkpoint"):
        load_model(other)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_model(tmp_path / "missing.ckpt")


def test_regular_install_runs_every_cli_from_anywhere(tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    top = sorted(p.name for p in target.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")
                 and p.name not in ("bin", "__pycache__"))
    assert top == ["drope"], top
    assert (target / "drope" / "configs" / "sim" / "default.yaml").is_file()
    scripts = sorted((target / "bin").glob("drope-*"))
    assert len(scripts) >= 9, scripts
    env = {**os.environ, "PYTHONPATH": str(target)}
    work = tmp_path / "elsewhere"
    work.mkdir()
    for script in scripts:
        r = subprocess.run([sys.executable, str(script), "--help"], cwd=work, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, (script.name, r.stderr[-1500:])
        assert r.stdout.strip(), script.name
    # the installed copy, not the checkout, served the imports
    r = subprocess.run([sys.executable, "-c", "import drope.sim, drope.configs; print(drope.sim.__file__)"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert str(target) in r.stdout, r.stdout + r.stderr
