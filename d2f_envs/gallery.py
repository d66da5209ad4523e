"""A gallery image of every registered task and robot, with the flow's target points drawn.

    python -m d2f_envs.gallery -o docs/gallery.png

Each tile is ``env.render()`` after a reset and a few zero actions: green points
are the flow's current subgoal, red ones its last frame.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def render_tiles(width: int = 320, height: int = 240):
    import gymnasium as gym

    from . import ENV_IDS

    tiles = []
    for env_id in ENV_IDS:
        cls = gym.spec(env_id).entry_point
        module, name = cls.split(":")
        robots = getattr(__import__(module, fromlist=[name]), name).robots
        for robot in robots:
            env = gym.make(env_id, robot=robot, render_mode="rgb_array", width=width, height=height)
            env.reset(seed=0)
            for _ in range(3):
                env.step(np.zeros(env.action_space.shape, dtype=np.float32))
            tiles.append((f"{env_id}  robot={robot}", env.render()))
            env.close()
    return tiles


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default="docs/gallery.png")
    ap.add_argument("--cols", type=int, default=3)
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiles = render_tiles()
    rows = -(-len(tiles) // args.cols)
    fig, axes = plt.subplots(rows, args.cols, figsize=(4 * args.cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, img) in zip(axes.ravel(), tiles):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out} ({len(tiles)} tiles)")


if __name__ == "__main__":
    main()
