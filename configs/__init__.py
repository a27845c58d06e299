"""The hydra/yaml configs, shipped as package data (``drope.configs``) so every CLI finds them
from a regular, non-editable install and from any working directory."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def config_dir(group: str = "") -> Path:
    """Directory of one config group (``"sim"``, ``"model"``, ...) or the root for ``""``."""
    path = ROOT / group if group else ROOT
    if not path.is_dir():
        raise FileNotFoundError(f"drope config group {group!r} not found under {ROOT}")
    return path
