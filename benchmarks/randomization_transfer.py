"""Does domain randomisation help under perturbed dynamics? PPO with real observations.

    python benchmarks/randomization_transfer.py                      # Push-T (pusher), 150k steps per policy
    python benchmarks/randomization_transfer.py --steps 1000000 --episodes 50
    python benchmarks/randomization_transfer.py --env D2F-OpenDoor-v0 --robot panda_gripper --steps 300000 --episodes 50

Trains two PPO policies with ``d2f_rl/hyperparams/ppo_real.yml``'s settings for ``--env`` and
``obs_mode="real"`` (the tracker model: noise, dropout, occlusion, latency), the same seed and
budget: ``plain`` (nominal physics) and ``randomized`` (that YAML's ``randomize`` ranges). Each is
evaluated (deterministic actions, frozen observation normalisation where the YAML's ``normalize``
normalises observations, seeds 1000..) on the nominal
dynamics, on one fixed perturbation at and beyond the edges of the training ranges
(:data:`PERTURBED`), and on each of its parts alone. Writes ``benchmarks/results/randomization_transfer.{json,md}`` with the
machine line. A short budget under-trains Push-T (the tuned 1M-step run reaches 58 % success):
read the final error, not only the success rate.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "d2f_rl" / "hyperparams" / "ppo_real.yml"
#: the test-time dynamics: heavier, more slippery-or-sticky block, softer servos, one step of
#: action latency and a 1 cm / 1.1 degree camera calibration error
PERTURBED = {
    "friction": (1.4, 1.4), "mass": (1.3, 1.3), "kp": (0.75, 0.75), "action_latency": (1, 1),
    "camera_translation": (0.01, 0.01), "camera_rotation": (0.02, 0.02),
}


def make_vec(env_id, env_kwargs, n_envs, seed):
    # train.py's default vector env (one mujoco.batch call per control step)
    from d2f_rl.vec_env import make_batched_vec_env
    from d2f_rl.wrappers import Float32Observation

    return make_batched_vec_env(env_id, n_envs, seed=seed, env_kwargs=env_kwargs, wrapper_class=Float32Observation)


def evaluate(env_id, model, obs_rms, env_kwargs, episodes, seed0):
    """Success rate, mean final error (m) and mean return over ``episodes`` seeded episodes."""
    import gymnasium as gym

    import d2f_envs  # noqa: F401

    env = gym.make(env_id, **env_kwargs)
    succ, err, ret = [], [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed0 + ep)
        total, done, info = 0.0, False, {}
        while not done:
            o = obs.astype(np.float32) if obs_rms is None else \
                np.clip((obs - obs_rms.mean) / np.sqrt(obs_rms.var + 1e-8), -10, 10).astype(np.float32)
            action, _ = model.predict(o, deterministic=True)
            obs, r, term, trunc, info = env.step(action)
            total += r
            done = term or trunc
        succ.append(bool(info["is_success"]))
        err.append(info["final_error"])
        ret.append(total)
    env.close()
    return {"success_rate": float(np.mean(succ)), "mean_final_error_m": float(np.mean(err)), "mean_return": float(np.mean(ret))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="D2F-PushT-v0", help="an env id with an entry in ppo_real.yml")
    ap.add_argument("--robot", default=None, help="robot kwarg (default: the env's default robot)")
    ap.add_argument("--steps", type=int, default=150_000)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-envs", type=int, default=None, help="override the YAML's n_envs")
    ap.add_argument("--no-ablation", action="store_true", help="skip the one-perturbation-at-a-time evaluations")
    ap.add_argument("--out", default=None,
                    help="default: benchmarks/results/randomization_transfer.json (Push-T), "
                         "randomization_transfer_<task>_<robot>.json otherwise")
    args = ap.parse_args(argv)
    if args.out is None:
        name = "randomization_transfer" if args.env == "D2F-PushT-v0" and args.robot is None else \
            f"randomization_transfer_{args.env.split('-')[1]}_{args.robot or 'default'}"
        args.out = str(REPO / "benchmarks" / "results" / f"{name}.json")

    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from d2f_rl.utils import read_hyperparams

    torch.set_num_threads(1)
    hp = read_hyperparams("ppo", args.env, CONF, quiet=True)
    if "randomize" not in (hp.get("env_kwargs") or {}):
        sys.exit(f"{CONF}: no entry for {args.env} with env_kwargs.randomize (the training ranges)")
    real_kwargs = dict(hp["env_kwargs"])
    if args.robot:
        real_kwargs["robot"] = args.robot
    train_randomize = real_kwargs.pop("randomize")
    n_envs = args.n_envs or int(hp["n_envs"])
    ppo_kwargs = {k: v for k, v in hp.items() if k not in ("env_kwargs", "n_timesteps", "n_envs", "normalize", "env_wrapper", "policy", "policy_kwargs")}
    ppo_kwargs["policy_kwargs"] = eval(hp["policy_kwargs"])  # the YAML's Python expression (rl-zoo's format)
    gamma = ppo_kwargs.get("gamma", 0.99)
    # rl-zoo's `normalize`: true, or a "dict(norm_obs=..., norm_reward=...)" expression
    norm = hp.get("normalize", False)
    norm = eval(norm) if isinstance(norm, str) else ({"norm_obs": True, "norm_reward": True} if norm else {"norm_obs": False, "norm_reward": False})

    conditions = {"plain": real_kwargs, "randomized": {**real_kwargs, "randomize": train_randomize}}
    evals = {"nominal": real_kwargs, "perturbed": {**real_kwargs, "randomize": PERTURBED}}
    if not args.no_ablation:  # each perturbation alone: which one a policy is sensitive to
        evals.update({f"perturbed: {k} only": {**real_kwargs, "randomize": {k: v}} for k, v in PERTURBED.items()})
    rows = []
    for name, kw in conditions.items():
        venv = VecNormalize(make_vec(args.env, kw, n_envs, args.seed), gamma=gamma, **norm)
        model = PPO(hp["policy"], venv, seed=args.seed, verbose=0, device="cpu", **ppo_kwargs)
        t0 = time.perf_counter()
        model.learn(total_timesteps=args.steps)
        wall = time.perf_counter() - t0
        for ev_name, ev_kw in evals.items():
            res = evaluate(args.env, model, venv.obs_rms if venv.norm_obs else None, ev_kw, args.episodes, seed0=1000)
            rows.append({"trained": name, "evaluated": ev_name, "env_steps": args.steps, "train_wall_s": wall,
                         "episodes": args.episodes, **res})
            print(rows[-1], flush=True)
        venv.close()

    md = [
        f"Machine: {machine()}.",
        "",
        f"{args.env} ({real_kwargs.get('robot', 'default robot')}), PPO (ppo_real.yml settings, n_envs {n_envs}, normalize {norm}), "
        f"obs_mode=\"real\", seed {args.seed}. `python {' '.join(['benchmarks/randomization_transfer.py'] + (argv if argv is not None else sys.argv[1:]))}`",
        f"Perturbed: {PERTURBED}",
        "",
        "| trained | evaluated | env steps | train wall | success | mean final error | mean return |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        md.append(f"| {r['trained']} | {r['evaluated']} | {r['env_steps']:,} | {r['train_wall_s'] / 60:.1f} min | "
                  f"{100 * r['success_rate']:.0f} % ({r['episodes']}) | {100 * r['mean_final_error_m']:.2f} cm | {r['mean_return']:.1f} |")
    write_results(Path(args.out), rows, md)


if __name__ == "__main__":
    main()
