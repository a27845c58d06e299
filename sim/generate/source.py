"""The generator as a ``drope.scene_sources`` entry point (``generated``), so the library's
training and evaluation reach generated scenes without importing the simulator."""
from __future__ import annotations

from tqdm import tqdm

from drope.data.scene import Scene
from drope.sim.generate.scenario import generate_scene


def generated_scenes(n: int, seed: int) -> list[Scene]:
    """Scenes ``0..n-1`` of the generated dataset with ``seed`` (in-memory; fine for demos and tests)."""
    return [generate_scene(seed, i)[0] for i in tqdm(range(n), desc=f"generate (seed {seed})", unit="scene",
                                                       disable=n < 64)]
