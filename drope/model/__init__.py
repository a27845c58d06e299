"""The DRoPE agent-interaction transformer (stable forward contract; the ONNX export relies on it).

``DRoPETransformer.forward`` takes plain tensors only (B scenes, A agents, H history steps ending
at the current step, M map segments of S points, F future steps: H, S and F are the model's
``ModelConfig.features`` — 11/8/80 on WOMD, 50/8/60 on Argoverse 2; everything in each scene's own
frame, metres and radians)::

    forward(agent_pos [B,A,H,2] f32, agent_heading [B,A,H] f32, agent_vel [B,A,H,2] f32,
            agent_size [B,A,3] f32, agent_type [B,A] i64, agent_valid [B,A,H] bool,
            map_points [B,M,S,2] f32, map_type [B,M] i64, map_signal [B,M] i64, map_mask [B,M] bool)
        -> traj [B,A,K,F,3]    (x, y, heading) in each agent's frame at the current step
           scale [B,A,K,F,2]   Laplace scales of x, y (m)
           logits [B,A,K]      mode scores (softmax → probabilities)

K (``ModelConfig.num_modes``) is fixed per model; B, A, M are dynamic. Agents whose current step is
invalid are masked as keys and give finite, meaningless outputs. ``to_scene_frame(traj, pos_now
[B,A,2], heading_now [B,A])`` maps predictions back to the scene frame.
``drope.data.batch.collate_scenes(scenes, model.cfg.features).model_inputs()`` builds the inputs from
``Scene`` objects.
"""
from drope.model.config import ModelConfig
from drope.model.transformer import DRoPETransformer, build_model, to_scene_frame

__all__ = ["DRoPETransformer", "ModelConfig", "build_model", "to_scene_frame"]
