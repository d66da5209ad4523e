"""dream2flow-gym environments: a 3D object flow becomes a dense tracking reward.

Importing ``d2f_envs`` registers every env id with Gymnasium (lazy string entry
points, one registry: :data:`ENV_IDS`). No torch is imported.

    import gymnasium as gym, d2f_envs
    env = gym.make("D2F-PushT-v0", robot="pusher")          # shipped flow
    env = gym.make("D2F-PushT-v0", flow="my_flow.npz")      # your flow
"""
import os

# offscreen rendering on machines without a display (must precede mujoco's GL import)
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")

import functools

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

# env id -> (entry point, max episode steps)
ENV_IDS = {
    "D2F-PushT-v0": ("d2f_envs.tasks.push_t:PushTEnv", 80),
    "D2F-OpenDrawer-v0": ("d2f_envs.tasks.open_drawer:OpenDrawerEnv", 100),
    "D2F-OpenDoor-v0": ("d2f_envs.tasks.open_door:OpenDoorEnv", 120),
    "D2F-PickPlace-v0": ("d2f_envs.tasks.pick_place:PickPlaceEnv", 110),
    "D2F-CoverBowl-v0": ("d2f_envs.tasks.cover_bowl:CoverBowlEnv", 80),
    "D2F-SweepPasta-v0": ("d2f_envs.tasks.sweep_pasta:SweepPastaEnv", 150),
}


def make_batched_vector_env(env_id: str, num_envs: int, **kwargs):
    """``gym.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point")``: the batched
    :class:`~d2f_envs.vector.BatchedFlowVectorEnv` (imported on first use)."""
    from .vector import BatchedFlowVectorEnv

    return BatchedFlowVectorEnv(env_id, num_envs=num_envs, **kwargs)


def register_envs() -> None:
    for env_id, (entry_point, max_steps) in ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps,
                     vector_entry_point=functools.partial(make_batched_vector_env, env_id))


register_envs()

from .bindings import RigidBinding  # noqa: E402
from .reward import FlowTrackingReward, RewardScales  # noqa: E402

__all__ = ["ENV_IDS", "FlowTrackingReward", "RewardScales", "RigidBinding", "register_envs"]
