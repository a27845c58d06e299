"""Checkpoint I/O and scene-frame prediction: one place, below training, evaluation and export.

A drope checkpoint is a ``torch.save`` dict holding at least ``model`` (state dict) and
``model_config`` (``ModelConfig.to_dict()``, whose ``features`` is the model's feature contract:
history/future steps, map segments, radii); the trainer adds optimiser/RNG state for resume.
Checkpoints written before ``features`` existed load with their flat keys and WOMD defaults.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from drope.model.transformer import DRoPETransformer, build_model, to_scene_frame


def save_checkpoint(path: Path, payload: dict) -> None:
    """Atomic: write a temp file, then rename over the target (a kill never leaves half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The checkpoint dict; a file that is not a drope checkpoint is a ``ValueError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, AttributeError, ImportError) as e:
        raise ValueError(f"{path}: not a drope checkpoint (torch.load failed: {type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path}: not a drope checkpoint (missing model_config/model)")
    return ckpt


def load_model(ckpt_path: str | Path, map_location="cpu") -> tuple[DRoPETransformer, dict]:
    """Rebuild the model from a checkpoint (config inside); returns ``(model, checkpoint)``."""
    ckpt = read_checkpoint(ckpt_path, map_location)
    try:
        model = build_model(ckpt["model_config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{ckpt_path}: model_config does not describe a drope model: {e}") from None
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        # the trajectory head is sized by the horizon: the likeliest cause of an edited/garbled config
        hint = " (head_traj is sized by features.future)" if "head_traj" in str(e) else ""
        raise ValueError(f"{ckpt_path}: weights do not match the model config inside it{hint}: {e}") from None
    return model.eval(), ckpt


def scene_frame_outputs(model: DRoPETransformer, **inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``traj [B, A, K, F, 3]`` (x, y, heading) in the scene frame and ``prob [B, A, K]``.

    Takes the model's plain-tensor inputs by name; this is exactly what the ONNX graph serves, so
    eager evaluation and the exported model share it.
    """
    traj, _, logits = model(**inputs)
    pos, heading = inputs["agent_pos"], inputs["agent_heading"]
    return to_scene_frame(traj, pos[:, :, -1], heading[:, :, -1]), logits.softmax(-1)


@torch.no_grad()
def predict_scene_frame(model: DRoPETransformer, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, A, K, F, 2]`` scene-frame positions and ``[B, A, K]`` probabilities for a ``SceneBatch``."""
    traj, prob = scene_frame_outputs(model, **batch.model_inputs())
    return traj[..., :2], prob
