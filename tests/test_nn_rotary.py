"""Rotary math against slow references (complex numbers, loops) and its guarantees as properties."""
from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import given, settings, strategies as st

from drope.nn import ENCODINGS, EncodingConfig, PoseAttention
from drope.nn.rotary import apply_rotary, metric_frequencies, pose_angles, schedule_cos_sum
from drope.registry import Registry

# 25 examples in CI; DROPE_PROPERTY_EXAMPLES=1000 for a deeper local search
PROP = settings(max_examples=int(os.environ.get("DROPE_PROPERTY_EXAMPLES", "25")), deadline=None)


def test_pair_layout_is_interleaved():
    x = torch.tensor([1.0, 0.0, 3.0, 4.0])
    a = torch.tensor([math.pi / 2, 0.0])
    y = apply_rotary(x, torch.cos(a), torch.sin(a))
    assert torch.allclose(y, torch.tensor([0.0, 1.0, 3.0, 4.0]), atol=1e-7)


@PROP
@given(seed=st.integers(0, 10_000))
def test_apply_rotary_equals_complex_multiplication(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, 16, generator=g, dtype=torch.float64)
    a = torch.randn(3, 5, 8, generator=g, dtype=torch.float64) * 50
    ref = torch.view_as_real(torch.view_as_complex(x.reshape(3, 5, 8, 2).contiguous()) * torch.exp(1j * a))
    assert torch.allclose(apply_rotary(x, torch.cos(a), torch.sin(a)), ref.reshape(3, 5, 16), atol=1e-10)


@PROP
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1.0, 100.0, 1e4]))
def test_rotary_relative_identity(seed, scale):
    """<R(a) q, R(b) k> = <q, R(b - a) k> pair by pair: the score sees only angle differences."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 7, 32, generator=g, dtype=torch.float64).unbind(0)
    a, b = ((torch.rand(2, 7, 16, generator=g, dtype=torch.float64) - 0.5) * scale).unbind(0)
    rot = lambda x, t: apply_rotary(x, torch.cos(t), torch.sin(t))  # noqa: E731
    lhs = (rot(q, a) * rot(k, b)).sum(-1)
    rhs = (q * rot(k, b - a)).sum(-1)
    assert torch.allclose(lhs, rhs, atol=1e-9)


def logits(att: PoseAttention, x: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """[B, H, N, N] pre-softmax scores of a rotary attention (slow path, for checks)."""
    pose = torch.nn.functional.pad(pose, (0, 4 - pose.shape[-1]))
    q, k = att.split_heads(att.q(x)), att.split_heads(att.k(x))
    q, k = att.encoding.rotate(q, pose), att.encoding.rotate(k, pose)
    return q.double() @ k.double().transpose(-1, -2)


def slow_logit(att, x, pose, i, j, h):
    """One score by loops over pairs with complex numbers: Re Σ conj(q_p) k_p e^{j(a_j - a_i)}."""
    W = att.encoding.coefficients().double()
    pose4 = torch.nn.functional.pad(pose, (0, 4 - pose.shape[-1])).double()
    q = att.split_heads(att.q(x))[0, h, i].double()
    k = att.split_heads(att.k(x))[0, h, j].double()
    total = 0.0
    for p in range(q.shape[0] // 2):
        ai, aj = float(W[h, p] @ pose4[0, i]), float(W[h, p] @ pose4[0, j])
        qc, kc = complex(q[2 * p], q[2 * p + 1]), complex(k[2 * p], k[2 * p + 1])
        total += (qc.conjugate() * kc * complex(math.cos(aj - ai), math.sin(aj - ai))).real
    return total


def scene(seed, n=12, span=150.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, 64, generator=g)
    xy = (torch.rand(1, n, 2, generator=g) - 0.5) * span
    th = (torch.rand(1, n, 1, generator=g) * 2 - 1) * math.pi
    return x, torch.cat([xy, th], -1)


def attn(name="drope_rope", **kw):
    torch.manual_seed(0)
    return PoseAttention(64, 4, EncodingConfig(name=name, **kw)).eval()


@pytest.mark.parametrize("kw", [dict(), dict(allocation="intra_head"), dict(harmonics=3), dict(learnable_mixed=True)])
def test_logits_match_slow_complex_reference(kw):
    att = attn(**kw)
    x, pose = scene(1)
    with torch.no_grad():
        fast = logits(att, x, pose)
        for i, j, h in [(0, 1, 0), (3, 7, 1), (5, 5, 2), (11, 2, 3)]:
            assert float(fast[0, h, i, j]) == pytest.approx(slow_logit(att, x, pose, i, j, h), abs=2e-3, rel=1e-4)


@PROP
@given(seed=st.integers(0, 1000), dx=st.floats(-50, 50), dy=st.floats(-50, 50))
def test_relative_shift_identity(seed, dx, dy):
    """Shifting every position by the same vector leaves scores unchanged (fp32 tolerance)."""
    att = attn()
    x, pose = scene(seed)
    shifted = pose + torch.tensor([dx, dy, 0.0])
    with torch.no_grad():
        a, b = logits(att, x, pose), logits(att, x, shifted)
    assert (a - b).abs().max() <= 2e-3 * (1 + a.abs().max())


def recentred_pair(pose: torch.Tensor, sx: float, sy: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Scene-frame poses (float64) of a scene and of its copy shifted by (sx, sy) in the world.

    The shift is applied to world coordinates, then each copy is re-centred on its own mean
    position in float64, the way a Scene is built from WOMD (origin held in float64).
    """
    world = pose.double() + torch.tensor([sx, sy, 0.0], dtype=torch.float64)
    a = world - torch.nn.functional.pad(world[0, :, :2].mean(0), (0, 1))
    b = pose.double() - torch.nn.functional.pad(pose.double()[0, :, :2].mean(0), (0, 1))
    return a, b


@PROP
@given(seed=st.integers(0, 1000), sx=st.floats(-1e4, 1e4), sy=st.floats(-1e4, 1e4))
def test_translation_invariance_after_recentring(seed, sx, sy):
    """World shifts up to 10 km, re-centred in float64, fp32 q/k/logits: scores equal to ≤ 1e-5.

    The re-centred float64 poses go straight into the encoding (angles and cos/sin from float64,
    rotation and dot products in fp32), (re-centred float64 on the host, angles in float32).
    """
    att = attn()
    x, pose = scene(seed)
    a_pose, b_pose = recentred_pair(pose, sx, sy)
    with torch.no_grad():
        a, b = logits(att, x, a_pose), logits(att, x, b_pose)
    assert (a - b).abs().max() <= 1e-5 * (1 + a.abs().max())


@PROP
@given(seed=st.integers(0, 1000), sx=st.floats(-1e4, 1e4), sy=st.floats(-1e4, 1e4))
def test_translation_invariance_fp32_poses_within_rounding(seed, sx, sy):
    """Same with the re-centred poses cast to fp32 first: exact unless a coordinate rounds the other way.

    One fp32 step of a coordinate within ±128 m is 7.6e-6 m; at the shortest wavelength
    (ω = 4π rad/m) that turns a pair by 1e-4 rad, so scores may differ by that much times
    |q_p||k_p| — the bound asserted here, and the reason float64 re-centring is recommended.
    """
    att = attn()
    x, pose = scene(seed)
    a_pose, b_pose = recentred_pair(pose, sx, sy)
    a_pose, b_pose = a_pose.float(), b_pose.float()
    step = float((a_pose[..., :2].double() - b_pose[..., :2].double()).abs().max())  # 0 or one fp32 step
    assert step <= 2**-23 * float(a_pose[..., :2].abs().max())
    with torch.no_grad():
        a, b = logits(att, x, a_pose), logits(att, x, b_pose)
        q, k = att.split_heads(att.q(x)).double(), att.split_heads(att.k(x)).double()
    omega_max = float(att.encoding.coefficients()[..., :2].norm(dim=-1).max())
    bound = 2 * omega_max * step * q.norm(dim=-1).max() * k.norm(dim=-1).max() + 1e-5 * (1 + a.abs().max())
    assert (a - b).abs().max() <= bound


@PROP
@given(seed=st.integers(0, 1000), k=st.integers(-3, 3), harmonics=st.sampled_from([1, 3]))
def test_heading_is_exactly_2pi_periodic(seed, k, harmonics):
    att = attn(harmonics=harmonics)
    x, pose = scene(seed)
    turned = pose + torch.tensor([0.0, 0.0, 2 * math.pi * k])
    with torch.no_grad():
        a, b = logits(att, x, pose), logits(att, x, turned)
    assert (a - b).abs().max() <= 1e-4 * (1 + a.abs().max())


@PROP
@given(seed=st.integers(0, 1000), c=st.floats(-math.pi, math.pi))
def test_scores_depend_on_heading_difference_only(seed, c):
    """A common heading offset (positions fixed) leaves every score unchanged."""
    att = attn()
    x, pose = scene(seed)
    with torch.no_grad():
        a, b = logits(att, x, pose), logits(att, x, pose + torch.tensor([0.0, 0.0, c]))
    assert (a - b).abs().max() <= 1e-4 * (1 + a.abs().max())


def test_plain_rope_on_heading_is_not_periodic():
    """Why DRoPE: rotating heading pairs with non-integer frequencies breaks 2π periodicity."""
    pose = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    w_plain = torch.zeros(1, 2, 4)
    w_plain[0, :, 2] = torch.tensor([1.0, 0.37])
    a = pose_angles(pose, w_plain)
    b = pose_angles(pose + torch.tensor([0, 0, 2 * math.pi, 0]), w_plain)
    assert (torch.cos(a) - torch.cos(b)).abs().max() > 0.1


def test_whole_scene_rotation_gap_is_measured_not_assumed():
    """Position RoPE sees world-frame offsets: rotating the whole scene changes scores (reported)."""
    att = attn()
    x, pose = scene(3)
    c, s = math.cos(0.7), math.sin(0.7)
    R = torch.tensor([[c, -s], [s, c]])
    rotated = torch.cat([pose[..., :2] @ R.T, pose[..., 2:] + 0.7], -1)
    with torch.no_grad():
        a, b = logits(att, x, pose), logits(att, x, rotated)
    gap = float((a - b).abs().max() / a.abs().max())
    # ~0.9 of the logits' scale: far from invariant (a bug that made position RoPE rotation-blind would
    # drive this to ~0), and finite
    assert math.isfinite(gap) and gap > 0.1


@pytest.mark.parametrize(
    "dim,heads,kw,distance",
    [
        (512, 8, dict(), 100.0),  # defaults: head_dim 64, λ 0.5–2000 m, 25 % NoPE → 100 m
        (256, 8, dict(), 100.0),
        (512, 8, dict(nope_fraction=0.5), 200.0),  # a longer range needs more NoPE pairs
        (512, 8, dict(lambda_min=1.0), 200.0),
    ],
)
def test_schedule_cos_sum_non_negative_over_range(dim, heads, kw, distance):
    enc = ENCODINGS.get("drope_rope")(EncodingConfig(max_distance=distance, **kw), dim, heads)
    assert enc.schedule_margin() >= 0.0


def test_schedule_margin_detects_a_bad_schedule():
    """Default schedule with too short heads stretched to 400 m fails the criterion: the check can fail."""
    enc = ENCODINGS.get("drope_rope")(EncodingConfig(), 128, 8)
    assert enc.schedule_margin(400.0) < 0.0


def test_schedule_margin_matches_brute_force_loop():
    enc = ENCODINGS.get("rope2d")(EncodingConfig(), 32, 2)
    W = enc.coefficients().double()
    worst = min(
        sum(math.cos(float(W[h, p, 0]) * d * math.cos(a) + float(W[h, p, 1]) * d * math.sin(a)) for p in range(W.shape[1]))
        for h in range(2) for a in torch.linspace(0, math.pi, 25).tolist() for d in torch.linspace(0, 100, 401).tolist()
    )
    assert enc.schedule_margin(100.0, samples=401) == pytest.approx(worst, abs=1e-9)


def test_metric_schedule_wavelengths():
    w = metric_frequencies(8, 0.5, 2000.0)
    lam = 2 * math.pi / w
    assert lam[0] == pytest.approx(0.5) and lam[-1] == pytest.approx(2000.0)
    assert torch.all(lam[1:] > lam[:-1])


@pytest.mark.parametrize("dtype,bound", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_half_precision_error_after_recentring(dtype, bound):
    """Angles in fp32 from re-centred poses; only the rotated q/k are cast to half."""
    att = attn()
    x, pose = scene(5)
    with torch.no_grad():
        q, k = att.split_heads(att.q(x)), att.split_heads(att.k(x))
        p4 = torch.nn.functional.pad(pose, (0, 1))
        qr, kr = att.encoding.rotate(q, p4), att.encoding.rotate(k, p4)
        ref = qr.double() @ kr.double().transpose(-1, -2)
        half = (qr.to(dtype).double() @ kr.to(dtype).double().transpose(-1, -2))
        err = float((half - ref).abs().max() / ref.abs().max())
        # the anti-pattern for contrast: world-scale positions cast to half before the angles
        world = (pose + torch.tensor([-7785.9, -6683.4, 0.0])).to(dtype).float()
        bad = att.encoding.rotate(q, torch.nn.functional.pad(world, (0, 1)))
        bad = bad.double() @ att.encoding.rotate(k, torch.nn.functional.pad(world, (0, 1))).double().transpose(-1, -2)
        bad_err = float((bad - ref).abs().max() / ref.abs().max())
    assert err < bound
    assert bad_err > 10 * err


def test_rotation_does_not_touch_values_or_mutate_state():
    att = attn()
    buffers = {k: v.clone() for k, v in att.named_buffers()}
    x, pose = scene(2)
    with torch.no_grad():
        att(x, pose)
    assert all(torch.equal(buffers[k], v) for k, v in att.named_buffers())


def test_registry_rejects_duplicates_and_names_known():
    r = Registry("thing")
    r.register("a")(1)
    with pytest.raises(KeyError, match="already registered"):
        r.register("a")(2)
    with pytest.raises(KeyError, match="known: absolute, drope, drope_rope, none, rope2d, rpe"):
        ENCODINGS.get("nope")
    assert set(ENCODINGS.names()) == {"none", "absolute", "rpe", "rope2d", "drope", "drope_rope"}


def test_learnable_mixed_params_fp32_and_excluded_from_decay():
    from drope.nn.encodings import no_weight_decay_names

    att = attn(learnable_mixed=True)
    names = no_weight_decay_names(att)
    assert names == {"encoding.rope_log_omega", "encoding.rope_phi"}
    assert all(p.dtype == torch.float32 for n, p in att.named_parameters() if n in names)
    x, pose = scene(0)
    att.train()
    att(x, pose).sum().backward()
    assert att.encoding.rope_phi.grad is not None and att.encoding.rope_phi.grad.abs().sum() > 0


def test_encoding_yaml_mirrors_the_dataclass():
    import dataclasses
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1] / "configs" / "encoding"
    fields = {f.name for f in dataclasses.fields(EncodingConfig)}
    for name in ENCODINGS.names():
        d = yaml.safe_load((root / f"{name}.yaml").read_text())
        assert set(d) == fields and d["name"] == name
        EncodingConfig(**d)


def test_rotary_math_stays_fp32_under_autocast():
    """bf16 autocast (GPU training) must not touch angles or cos/sin: radian errors at ±150 m otherwise."""
    att = attn()
    x, pose = scene(4, span=300.0)
    p4 = torch.nn.functional.pad(pose, (0, 1))
    q = att.split_heads(torch.randn(1, 12, 64))
    with torch.no_grad():
        ref_ang = pose_angles(p4, att.encoding.coefficients())
        ref_rot = att.encoding.rotate(q, p4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ang = pose_angles(p4, att.encoding.coefficients())
            rot = att.encoding.rotate(q, p4)
    assert ang.dtype == torch.float32 and torch.equal(ang, ref_ang)
    assert torch.allclose(rot, ref_rot, atol=1e-5)


@pytest.mark.parametrize("name", ["none", "rope2d", "drope", "drope_rope"])
def test_rotate_pair_equals_separate_rotations(name):
    """Self-attention computes cos/sin once; the result must equal rotating q and k separately."""
    att = attn(name)
    _, pose = scene(6)
    p4 = torch.nn.functional.pad(pose, (0, 1))
    q, k = torch.randn(2, 1, 4, 12, 16).unbind(0)
    rq, rk = att.encoding.rotate_pair(q, k, p4)
    assert torch.equal(rq, att.encoding.rotate(q, p4)) and torch.equal(rk, att.encoding.rotate(k, p4))
