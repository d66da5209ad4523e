"""How differently the cloth lands when D2F-CoverBowl-v0's demonstration is repeated from other starts.

    python benchmarks/cloth_demo_spread.py              # 10 starts
    python benchmarks/cloth_demo_spread.py --starts 20

Each repeat runs ``d2f_envs.demos.cover_bowl_demo`` with the cloth started at a random pose
within the env's reset noise (+-1 cm, +-0.05 rad, seeds 0..n-1), the hand's path moved with it,
and measures its last frame against the shipped flow's last frame re-anchored rigidly to that
start, exactly as the env's reward re-anchors the flow (the mean point distance: the env's
``final_error``), and the bowl's coverage. The spread is the chaos of a draped cloth, the floor
for the env's ``success_threshold`` (CoverBowlEnv's docstring, Success).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=10)
    args = ap.parse_args(argv)
    import gymnasium as gym

    import d2f_envs  # noqa: F401
    from d2f_envs.demos import cover_bowl_demo
    from d2f_envs.tasks.cover_bowl import CoverBowlEnv
    from flows import fit_rigid_transform, shipped_flow

    nominal = shipped_flow("D2F-CoverBowl-v0")
    env = gym.make("D2F-CoverBowl-v0").unwrapped
    errors = []
    for seed in range(args.starts):
        rng = np.random.default_rng(seed)
        shift = rng.uniform(-1, 1, 2) * CoverBowlEnv.cloth_xy_noise
        yaw = float(rng.uniform(-1, 1) * CoverBowlEnv.cloth_yaw_noise)
        flow = cover_bowl_demo(cloth_shift=shift, cloth_yaw=yaw)
        X = fit_rigid_transform(nominal.points[0], flow.points[0])
        target = nominal.points[-1].astype(np.float64) @ X[:3, :3].T + X[:3, 3]
        last = flow.points[-1].astype(np.float64)
        err = float(np.linalg.norm(last - target, axis=1).mean())
        errors.append(err)
        print(f"start {seed}: shift {shift.round(4).tolist()} m, yaw {yaw:+.3f} rad -> final error "
              f"{100 * err:.1f} cm, coverage {env.coverage(last):.3f}")
    e = 100 * np.array(errors)
    print(f"final error over {len(e)} starts: min {e.min():.1f}, median {np.median(e):.1f}, "
          f"90th percentile {np.percentile(e, 90):.1f}, max {e.max():.1f} cm")


if __name__ == "__main__":
    main()
