"""Traffic models shared by the scenario generator and the closed-loop simulator."""
from sim.traffic.idm import IDMParams, PARAMS_BY_TYPE, idm_acceleration, mobil_gain

__all__ = ["IDMParams", "PARAMS_BY_TYPE", "idm_acceleration", "mobil_gain"]
