"""Simulator policies, registered by name in :data:`POLICIES`.

A policy has ``reset(scene, state, rng)`` and ``act(state, rng) -> Actions`` (it never modifies
the state it is given). ``rng`` is a ``torch.Generator`` owned by the rollout (one per rollout
seed). Importing this package registers the built-in policies. ``idm`` is the vectorised IDM
(:class:`VectorisedIDM`, also exported as ``IDMPolicy``); ``idm_reference`` the per-agent one.
"""
from drope.sim.policies.base import POLICIES, ConstantVelocity, LogReplay, Policy, controlled_mask
from drope.sim.policies.idm import IDMReference
from drope.sim.policies.idm_vectorised import VectorisedIDM
from drope.sim.policies.learned import LearnedPolicy, Predictor

IDMPolicy = VectorisedIDM  # the policy named ``idm``

__all__ = ["POLICIES", "Policy", "LogReplay", "ConstantVelocity", "IDMPolicy", "IDMReference", "VectorisedIDM",
           "LearnedPolicy", "Predictor", "controlled_mask"]
