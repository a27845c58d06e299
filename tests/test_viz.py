"""Plots render real pixels; the CLI writes a PNG."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from drope.data.womd import read_scenarios  # noqa: E402
from drope.viz import draw_predictions, plot_scene  # noqa: E402


def test_plot_scene_png_is_not_blank(womd_path, tmp_path):
    (scene,) = list(read_scenarios(womd_path))
    fig, ax = plt.subplots(figsize=(4, 4))
    plot_scene(scene, ax)
    r = len(scene.tracks_to_predict)
    base = scene.agent_pos[scene.tracks_to_predict, 10:, :].numpy()
    modes = np.stack([base[:, :] + k * 0.5 for k in range(3)], axis=1)  # [R, 3, T, 2]
    draw_predictions(ax, modes, np.full((r, 3), 1 / 3))
    out = tmp_path / "scene.png"
    fig.savefig(out, dpi=60)
    plt.close(fig)
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[0] > 100 and len(np.unique(img.reshape(-1, 3), axis=0)) > 20


def test_viz_cli(womd_path, tmp_path, capsys):
    from drope.viz.cli import main

    out = tmp_path / "x.png"
    assert main([str(womd_path), "--out", str(out), "--dpi", "40"]) == 0
    assert out.stat().st_size > 5000
    assert main([str(womd_path), "--scenario-id", "nope", "--out", str(out)]) == 2
    assert "no scenario" in capsys.readouterr().err


def test_animation_reuses_artists_and_is_fast(tmp_path):
    from drope.viz.animate import animate_scene
    from tests.test_data_scene import make_scene

    s = make_scene(A=4, T=12)
    hl = torch.zeros(4, 12, dtype=torch.bool)
    hl[1, 3:6] = True
    info = animate_scene(s, tmp_path / "a.gif", highlight=hl, dpi=40)
    assert info["frames"] == 12 and (tmp_path / "a.gif").stat().st_size > 1000
    assert info["seconds_per_frame"] < 0.5  # generous bound for shared CI cores; the README reports the real number
    frames = Image.open(tmp_path / "a.gif").n_frames
    assert frames >= 2
