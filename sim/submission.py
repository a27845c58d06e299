"""drope-sim rollouts as official sim-agents submission protos (``submission=PATH``).

The official rules (``submission_specs``): every object valid at the current step (index 10) is a
sim agent and must be *simulated* for all 80 future steps of every rollout; WOSAC scores 32
rollouts per scenario. drope-sim's ``controlled=all`` drives exactly these agents by the evaluated
policy; with another ``controlled`` the remaining sim agents come from the ``background`` policy,
which must then simulate too (``idm``), not replay the log.

Coordinates are world x/y (the scene's float64 origin restores them) and world heading; the
simulator is planar, so each agent's z is its logged z at the current step, held.
"""
from __future__ import annotations

import torch

from drope.data.scene import Scene
from drope.metrics.wosac.config import WosacConfig
from drope.metrics.wosac.scoring import RolloutError
from drope.sim.rollout import Rollouts

#: policies that place agents at their logged poses (they read the logged future)
REPLAY_POLICIES = ("log_replay",)


def submission_rule_violation(policy: str, background: str, controlled: str) -> str | None:
    """Why a configuration cannot produce a valid submission (None: it can)."""
    if policy in REPLAY_POLICIES:
        return f"policy={policy} replays the logged future; the official rules require every sim agent to be simulated"
    if controlled != "all" and background in REPLAY_POLICIES:
        return (f"with controlled={controlled} the other sim agents (valid at the current step) replay the log "
                f"(background={background}); the official rules require them to be simulated: use controlled=all "
                "or background=idm")
    return None


def sim_scenario_rollouts(scene: Scene, ro: Rollouts, replayed: torch.Tensor, config: WosacConfig = WosacConfig()):
    """``ScenarioRollouts`` proto of one scene's rollouts, checked against the official rules.

    ``replayed [A]`` marks agents driven by a log-replay policy. Raises :class:`RolloutError`
    naming the scenario and object when a sim agent is replayed or not valid at every simulated
    step, then runs drope's and the official ``submission_specs`` validation on the proto.
    """
    from drope.data.womd import scene_to_proto
    from drope.metrics.submission import (rollouts_to_scenario_rollouts, validate_scenario_rollouts,
                                          validate_with_submission_specs)
    from drope.metrics.wosac.scoring import sim_agent_indices

    sid, t0, F = scene.scenario_id, config.current_index, config.num_future_steps
    if scene.num_steps != t0 + 1 + F or scene.current_index != t0 or ro.start != t0:
        raise RolloutError(f"scenario {sid}: {scene.num_steps} steps, current index {scene.current_index}; a "
                           f"sim-agents submission needs {t0 + 1 + F} steps with current index {t0}")
    if ro.xy.shape[2] != t0 + 1 + F:
        raise RolloutError(f"scenario {sid}: rollouts end at step {ro.xy.shape[2] - 1}, a submission needs {t0 + F}")
    sim = sim_agent_indices(scene, config)
    for a in sim.tolist():
        if bool(replayed[a]):
            raise RolloutError(f"scenario {sid}, object {int(scene.agent_id[a])}: a sim agent replayed from the log; "
                               "the official rules require it to be simulated (controlled=all or background=idm)")
    future = ro.valid[:, sim, t0 + 1 :]  # [R, O, F]
    if not bool(future.all()):
        r, o, t = (~future).nonzero()[0].tolist()
        raise RolloutError(f"scenario {sid}, rollout {r}, object {int(scene.agent_id[sim[o]])}: not simulated at "
                           f"step {t0 + 1 + t} (a sim agent must exist at all {F} future steps)")
    R = ro.num_rollouts
    z = scene.agent_z[sim, t0][None, :, None].expand(R, -1, F)
    proto = rollouts_to_scenario_rollouts(scene, ro.xy[:, sim, t0 + 1 :], z, ro.heading[:, sim, t0 + 1 :], sim)
    validate_scenario_rollouts(proto, scene, config, n_rollouts=R)
    validate_with_submission_specs(proto, scene_to_proto(scene))
    return proto
