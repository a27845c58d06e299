"""Traffic models shared by the scenario generator and the closed-loop simulator.

* ``idm``: ``idm_acceleration(v, v_desired, gap, dv, params)`` (numpy, torch or floats),
  ``IDMParams``, ``PARAMS_BY_TYPE``, MOBIL ``mobil_gain`` / ``mobil_decision``.
* ``lane_graph``: ``LaneGraph.from_scene(scene)`` with ``project``, ``pose_at``, ``leader``,
  ``random_route`` (works on generated and WOMD scenes).
* ``pedestrian``: ``social_force_acceleration`` for free-walking pedestrians.
"""
from drope.sim.traffic.idm import PARAMS_BY_TYPE, IDMParams, idm_acceleration, mobil_decision, mobil_gain
from drope.sim.traffic.lane_graph import FAR, LaneGraph
from drope.sim.traffic.pedestrian import PedestrianParams, social_force_acceleration

__all__ = ["IDMParams", "PARAMS_BY_TYPE", "idm_acceleration", "mobil_gain", "mobil_decision", "FAR", "LaneGraph",
           "PedestrianParams", "social_force_acceleration"]
