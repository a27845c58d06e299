"""Frames and angles now live in :mod:`drope.geometry`; this name stays for existing imports."""
from drope.geometry import frame_to_world, rot2, world_to_frame, wrap_angle, wrap_angle_f32  # noqa: F401
