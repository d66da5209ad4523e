"""dream2flow-gym agents: Stable-Baselines3 training and evaluation on the ``d2f_envs`` tasks.

This package (unlike ``d2f_envs`` and ``flows``) may import torch.

* :mod:`d2f_rl.train`: ``python train.py --algo sac --env D2F-PushT-v0`` (rl-baselines3-zoo style flags)
* :mod:`d2f_rl.evaluate`: ``python eval.py -f logs/sac/D2F-PushT-v0_1 --episodes 50``
* :mod:`d2f_rl.callbacks`: atomic checkpoints and flow-tracking evaluation
* :mod:`d2f_rl.export`: ``python eval.py -f RUN --export onnx`` (normalisation + actor + action scaling in one graph)
* :mod:`d2f_rl.policies`: ``AsymmetricActorCriticPolicy`` (privileged critic, real-observation actor; ``ppo_real_asym.yml``)
* :mod:`d2f_rl.deploy`: run an exported policy with numpy + onnxruntime only (``RobotInterface``, safety limits)
* :mod:`d2f_rl.planners`: zero-shot MPPI / CEM on ``mujoco.batch`` (``python eval.py --planner mppi``)
* ``d2f_rl/hyperparams/<algo>.yml``: hyperparameters per env id, rl-zoo's format
"""
from pathlib import Path

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"
ALGOS = ("sac", "ppo")

__all__ = ["ALGOS", "HYPERPARAMS_DIR"]
