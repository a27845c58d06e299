from sim.policies.base import POLICIES, ConstantVelocity, LogReplay, Policy, controlled_mask
