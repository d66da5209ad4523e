"""An asymmetric actor-critic for SB3's on-policy algorithms (PPO, A2C): a privileged critic, a real-observation actor.

The observation is ``[actor part (actor_dim entries) | privileged part]``, as
:class:`d2f_rl.wrappers.PrivilegedObservation` builds it (the real-robot observation, then the
simulator's state observation). :class:`AsymmetricActorCriticPolicy` reads

* actor (action distribution): ``obs[..., :actor_dim]`` only, so the trained actor runs on a robot
  from what the robot measures (``d2f_rl.export`` exports it with an ``actor_dim``-entry input);
* critic (value function): all of ``obs``; the critic is only used in training, where the
  simulator's true state is available and makes the advantage estimates less noisy.

In an rl-zoo YAML entry (``d2f_rl/hyperparams/ppo_real_asym.yml``)::

    policy: d2f_rl.policies.AsymmetricActorCriticPolicy
    env_wrapper: [d2f_rl.wrappers.PrivilegedObservation, d2f_rl.wrappers.Float32Observation]

``actor_dim`` is a policy keyword; ``d2f_rl.train`` fills it in from the env's
``PrivilegedObservation`` when ``policy_kwargs`` does not give it (it is saved with the model).
With ``python -m rl_zoo3.train`` pass it in ``policy_kwargs``.

Only the default ``FlattenExtractor`` is allowed: it is the identity on a flat ``Box``, so the
split happens in the MLP extractor and no feature mixes the two parts before the actor's slice.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Type, Union

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor, MlpExtractor
from torch import nn


class AsymmetricMlpExtractor(MlpExtractor):
    """SB3's ``MlpExtractor`` with the policy network fed only ``features[..., :actor_dim]``.

    Same ``net_arch`` semantics (``dict(pi=[...], vf=[...])`` or a list for both); the value network
    takes all ``feature_dim`` features, the policy network its first ``actor_dim``.
    """

    def __init__(self, feature_dim: int, net_arch: Union[List[int], Dict[str, List[int]]],
                 activation_fn: Type[nn.Module], device: Union[th.device, str] = "auto", *, actor_dim: int):
        if not 0 < int(actor_dim) <= int(feature_dim):
            raise ValueError(f"actor_dim={actor_dim} must be in [1, {feature_dim}] (the observation size)")
        super().__init__(feature_dim, net_arch, activation_fn, device)
        self.actor_dim = int(actor_dim)
        # the actor's network rebuilt on actor_dim inputs (value_net keeps all feature_dim)
        self.policy_net = MlpExtractor(self.actor_dim, net_arch, activation_fn, device).policy_net

    def forward(self, features: th.Tensor):
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        # a slice of the first actor_dim entries: also accepts an actor-only input (the exported graph's)
        return self.policy_net(features[..., :self.actor_dim])


class AsymmetricActorCriticPolicy(ActorCriticPolicy):
    """``ActorCriticPolicy`` whose actor sees only the first ``actor_dim`` observation entries
    (see the module docstring); everything else (distributions, gSDE, optimiser) is SB3's."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule, *args,
                 actor_dim: Optional[int] = None, **kwargs: Any):
        if actor_dim is None:
            raise ValueError("AsymmetricActorCriticPolicy needs policy_kwargs actor_dim (the size of the actor's, "
                             "i.e. the real, observation; d2f_rl.train fills it from PrivilegedObservation)")
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"AsymmetricActorCriticPolicy needs a flat Box observation space, got {observation_space}")
        fe = kwargs.get("features_extractor_class", FlattenExtractor)
        if fe is not FlattenExtractor:
            raise ValueError("AsymmetricActorCriticPolicy supports only the FlattenExtractor: another features "
                             "extractor could mix privileged entries into the actor's input")
        self.actor_dim = int(actor_dim)
        if not 0 < self.actor_dim <= int(observation_space.shape[0]):
            raise ValueError(f"actor_dim={actor_dim} must be in [1, {observation_space.shape[0]}]")
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = AsymmetricMlpExtractor(self.features_dim, net_arch=self.net_arch,
                                                    activation_fn=self.activation_fn, device=self.device,
                                                    actor_dim=self.actor_dim)

    def _get_constructor_parameters(self) -> Dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["actor_dim"] = self.actor_dim
        return data


__all__ = ["AsymmetricActorCriticPolicy", "AsymmetricMlpExtractor"]
