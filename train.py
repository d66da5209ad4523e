#!/usr/bin/env python
"""Train an agent on a dream2flow-gym env (rl-baselines3-zoo style flags).

    python train.py --algo sac --env D2F-PushT-v0                # logs/sac/D2F-PushT-v0_<n>
    python train.py --algo ppo -n 200000 --env-kwargs robot:'"panda"'
    python train.py --algo sac --resume                          # latest sac run, from its last checkpoint
    python train.py --help

Hyperparameters: d2f_rl/hyperparams/<algo>.yml (keyed by env id). The work is
done in d2f_rl/train.py: read the hyperparameters, make a numbered run folder,
build the envs and the model, learn with checkpoint and evaluation callbacks.
"""
from d2f_rl.train import main

if __name__ == "__main__":
    main()
