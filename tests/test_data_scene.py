"""Scene contract: validate() errors, frames, generic field handling."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from drope.data import Scene, SceneValidationError, scene_from_world
from drope.geometry import wrap_angle_f32
from tests.builders import make_scene


def test_valid_scene_passes_and_origin_is_sdc():
    s = make_scene().validate()
    assert torch.allclose(s.agent_pos[0, s.current_index], torch.zeros(2), atol=1e-4)
    assert s.agent_pos.dtype == torch.float32 and s.origin_xy.dtype == torch.float64


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("agent_pos", lambda s: s.agent_pos.clone().index_put_((torch.tensor([1]),), torch.tensor(float("nan"))), "NaN"),
        ("agent_vel", lambda s: torch.full_like(s.agent_vel, float("inf")), "NaN/Inf"),
        ("agent_heading", lambda s: s.agent_heading + 4.0, r"outside \[-π, π\)"),
        ("agent_pos", lambda s: s.agent_pos[:, :5], "shape"),
        ("agent_type", lambda s: s.agent_type.float(), "dtype"),
        ("map_offsets", lambda s: torch.tensor([0, 3, 9]), "map_offsets"),
        ("tracks_to_predict", lambda s: torch.tensor([99]), "tracks_to_predict"),
    ],
)
def test_validate_names_the_broken_field(field, value, match):
    s = make_scene()
    bad = dataclasses.replace(s, **{field: value(s)})
    with pytest.raises(SceneValidationError, match=match) as e:
        bad.validate()
    assert "test" in str(e.value)


def test_to_moves_every_tensor_field():
    s = make_scene().to("cpu")
    assert all(getattr(s, f.name).device.type == "cpu" for f in Scene.tensor_fields())


@settings(max_examples=25, deadline=None)
@given(dx=st.floats(-500, 500), dy=st.floats(-500, 500), h=st.floats(-math.pi, math.pi))
def test_reframe_round_trip_below_a_millimetre(dx, dy, h):
    """Re-centring to any frame near the scene (±500 m) and back keeps world positions to < 1 mm.

    (A frame kilometres away cannot: float32 spacing there is itself ~1 mm — the reason scenes
    are re-centred at all.)
    """
    s = make_scene()
    w0 = s.to_world()
    target = s.origin_xy.numpy() + np.array([dx, dy])
    back = s.reframe(target, h).reframe(s.origin_xy, float(s.origin_heading))
    assert np.abs(back.to_world().agent_pos - w0.agent_pos).max() < 1e-3
    d = (back.agent_heading.double() - s.agent_heading.double() + math.pi) % (2 * math.pi) - math.pi
    assert d.abs().max() < 1e-5


def test_wrap_angle_f32_stays_in_range():
    a = wrap_angle_f32(np.array([math.pi - 1e-9, -math.pi, 3 * math.pi, 1e3]))
    assert (a >= np.float32(-math.pi)).all() and (a < np.float32(math.pi)).all()


@settings(max_examples=25, deadline=None)
@given(x=st.floats(-9000, 9000), y=st.floats(-9000, 9000), seed=st.integers(0, 1000))
def test_world_to_scene_to_world_below_a_millimetre(x, y, seed):
    r = np.random.default_rng(seed)
    s = make_scene(A=4, T=11, origin=(x, y), seed=seed)
    xyz = np.concatenate([r.normal(size=(4, 11, 2)) * 150 + (x, y), np.zeros((4, 11, 1))], -1)
    s2 = scene_from_world(**{**_world_kwargs(s), "agent_xyz": xyz})
    assert s2.agent_pos.dtype == torch.float32
    assert np.abs(s2.to_world().agent_pos - xyz[..., :2]).max() < 1e-3


def _world_kwargs(s: Scene) -> dict:
    w = s.to_world()
    return dict(
        scenario_id=s.scenario_id, source=s.source, timestamps=s.timestamps.numpy(), current_index=s.current_index,
        sdc_index=s.sdc_index, agent_id=s.agent_id.numpy(), agent_type=s.agent_type.numpy(),
        agent_heading=w.agent_heading, agent_vel=w.agent_vel, agent_size=s.agent_size.numpy(),
        agent_valid=s.agent_valid.numpy(), tracks_to_predict=s.tracks_to_predict.numpy(),
        tracks_to_predict_difficulty=s.tracks_to_predict_difficulty.numpy(),
        objects_of_interest=s.objects_of_interest.numpy(), map_id=s.map_id.numpy(), map_type=s.map_type.numpy(),
        map_subtype=s.map_subtype.numpy(), map_offsets=s.map_offsets.numpy(),
        map_points=np.concatenate([w.map_xy, s.map_points[:, 2:].numpy()], -1),
        lane_speed_limit=s.lane_speed_limit.numpy(), lane_interpolating=s.lane_interpolating.numpy(),
        lane_links=s.lane_links.numpy(), stop_sign_lanes=s.stop_sign_lanes.numpy(),
        signal_lane_id=s.signal_lane_id.numpy(), signal_state=s.signal_state.numpy(),
        signal_stop_point=np.concatenate([w.signal_stop_xy, s.signal_stop_point[..., 2:].numpy()], -1),
        signal_valid=s.signal_valid.numpy(),
    )


def test_scene_from_world_round_trips_every_field():
    s = make_scene()
    again = scene_from_world(**_world_kwargs(s), agent_xyz=np.concatenate(
        [s.to_world().agent_pos, s.agent_z.numpy()[..., None]], -1))
    for f in Scene.tensor_fields():
        a, b = getattr(s, f.name), getattr(again, f.name)
        assert a.dtype == b.dtype and a.shape == b.shape, f.name
        assert torch.allclose(a.double(), b.double(), atol=2e-4, rtol=0), f.name
