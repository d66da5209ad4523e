"""Command line of dream2flow-gym's flows package: ``python -m flows COMMAND ...``.

Commands:

* ``extract``: video -> 3D object flow (``flows.extract``)::

      python -m flows extract VIDEO --object NAME --camera camera.json \\
          [--depth depth.npz] [--mask mask.png] [--tracker lk] \\
          [--depth-model measured|depth-anything] [--motion none|rigid|deformable] -o flow.npz

* ``show``: plot a flow's 3D trajectories to an image, or overlay them on a video::

      python -m flows show flow.npz -o flow.png
      python -m flows show flow.npz --video VIDEO -o overlay.mp4

* ``dream``: start image + instruction -> video with an image-to-video model
  (``flows.extract.video_model``; needs ``dream2flow-gym[dream]``), the input of ``extract``::

      python -m flows dream --image start.png --prompt "push the T-block into the target" \\
          [--model Lightricks/LTX-Video | --model DIR] [--num-frames 97] [--seed 0] -o video.mp4

* ``render-demo``: render a task's scripted demonstration (no robot; a stand-in hand) with its
  depth, object mask, camera and ground-truth flow, the test input of ``extract``::

      python -m flows render-demo D2F-PushT-v0 -o demo/ [--width 320 --height 240 --camera auto]

* ``calibrate``: check a ``camera.json``'s pose in the robot frame against marker positions the robot
  measured (and an RGB-D depth frame), or fit the pose to them (``flows.extract.calibrate``)::

      python -m flows calibrate pairs.csv --camera camera.json [--depth depth.npz --frame 0]
      python -m flows calibrate pairs.csv --camera camera.json --solve -o camera_calibrated.json

New commands register a ``(name, add_arguments, run)`` triple in
:data:`COMMANDS` (``run(args) -> exit code``).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np


class CommandError(Exception):
    """An error to report to the user in one line (exit code 1)."""


# ---------------------------------------------------------------------- extract
def _add_extract(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="video file (mp4, gif, ...) or a folder of PNG frames")
    p.add_argument("--object", required=True, dest="object_name", help="name of the moving object (e.g. 'drawer')")
    p.add_argument("--camera", required=True, help="camera.json: width, height, K (or fx, fy, cx, cy), T_world_camera")
    p.add_argument("--depth", default=None,
                   help="depth .npz/.npy or folder of 16-bit PNGs (mm): the measured depth, or the reference depth of "
                        "frame 0 that calibrates --depth-model depth-anything")
    p.add_argument("--mask", default=None, help="object mask image of frame 0 (PNG); default: --masker")
    p.add_argument("--masker", default="grounded-sam", help="masker used without --mask (default: grounded-sam)")
    p.add_argument("--tracker", default="lk", help="2D tracker: lk (default, no weights), blob (granular objects: pieces as blobs of "
                                                             "their colour, no weights) or cotracker")
    p.add_argument("--tracker-checkpoint", default=None, help="CoTracker checkpoint (.pth)")
    p.add_argument("--depth-model", default="measured", help="depth: measured (default) or depth-anything")
    p.add_argument("--depth-anything-model", default=None,
                   help="Depth Anything hub id or local folder (default depth-anything/Depth-Anything-V2-Small-hf)")
    p.add_argument("--calibration", default="scale", choices=["scale", "scale-shift", "none"],
                   help="depth-anything calibration to the reference depth (default: scale)")
    p.add_argument("--max-points", type=int, default=1024, help="maximum number of tracked points (default 1024)")
    p.add_argument("--queries", default="auto", choices=["auto", "fps", "features"], help="query point sampling")
    p.add_argument("--fps", type=float, default=None, help="frame rate (default: the video's, else 30)")
    p.add_argument("--task", default="", help="env id the flow is made for (metadata)")
    p.add_argument("--generator", default="", help="video generator that made the video (metadata)")
    p.add_argument("--notes", default="", help="free-form notes (metadata)")
    p.add_argument("--smooth", type=int, default=0, help="temporal moving-average window in frames (0: off)")
    p.add_argument("--motion", default="none", choices=["none", "rigid", "deformable"],
                   help="motion model: rigid drops points that do not move with the object (a rigid object, or one "
                        "moving part of an articulated one) and fills lost points from its fitted pose; deformable "
                        "(a cloth, a bending object) fills lost points from their neighbours' motion (default none)")
    p.add_argument("--rigid-threshold", type=float, default=0.01,
                   help="with --motion rigid: metres from the fitted pose beyond which a point is dropped (default 0.01)")
    p.add_argument("--neighbours", type=int, default=8,
                   help="with --motion deformable: measured neighbours whose motion moves a lost point (default 8)")
    p.add_argument("--stretch", type=float, default=0.005,
                   help="with --motion deformable: metres a point's distances to its neighbours may change before "
                        "it counts as slid off the object (default 0.005; 0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="output flow .npz")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_extract(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.suffix != ".npz":
        out = out.with_suffix(out.suffix + ".npz") if out.suffix else out.with_suffix(".npz")
    if out.exists() and not args.overwrite:
        raise CommandError(f"{out}: exists; pass --overwrite to replace it")
    try:
        from flows.extract import extract_flow
    except ImportError as exc:
        raise CommandError(f"flows.extract needs OpenCV: pip install 'dream2flow-gym[extract]' ({exc})") from None
    tracker_options = {}
    if args.tracker_checkpoint:
        tracker_options["checkpoint"] = args.tracker_checkpoint
    depth_options = {}
    if args.depth_model == "depth-anything":
        depth_options["calibration"] = args.calibration
        if args.depth_anything_model:
            depth_options["model"] = args.depth_anything_model
    flow = extract_flow(
        args.video, args.camera, mask=args.mask, masker=args.masker, tracker=args.tracker,
        depth=args.depth_model, depth_data=args.depth, object_name=args.object_name, max_points=args.max_points,
        fps=args.fps, progress=not args.no_progress, task=args.task, queries=args.queries,
        generator=args.generator, notes=args.notes, tracker_options=tracker_options, depth_options=depth_options,
        lift_options={"smooth": args.smooth}, motion=args.motion,
        motion_options={"rigid": {"threshold": args.rigid_threshold},
                        "deformable": {"neighbours": args.neighbours, "stretch": args.stretch}}.get(args.motion), seed=args.seed,
    )
    path = flow.save(out, overwrite=args.overwrite)
    vis = flow.visible.mean()
    print(f"wrote {path}: {flow.num_frames} frames x {flow.num_points} points, {vis:.0%} visible, fps {flow.fps:g}")
    return 0


# ---------------------------------------------------------------------- show
def _add_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("flow", help="flow .npz")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .pdf, ...) or, with --video, .mp4/.gif")
    p.add_argument("--video", default=None, help="overlay the flow on this video (uses the flow's intrinsics/extrinsics)")
    p.add_argument("--max-points", type=int, default=200, help="points drawn (farthest-point subsample, default 200)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def _plot_3d(flow, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    P = flow.points
    T = flow.num_frames
    fig = plt.figure(figsize=(7, 6))
    ax = fig.add_subplot(111, projection="3d")
    cmap = plt.get_cmap("viridis")
    for i in range(flow.num_points):
        ax.plot(P[:, i, 0], P[:, i, 1], P[:, i, 2], color="0.6", lw=0.6, alpha=0.6)
    for t, c in ((0, cmap(0.0)), (T - 1, cmap(1.0))):
        v = flow.visible[t]
        ax.scatter(P[t, v, 0], P[t, v, 1], P[t, v, 2], s=4, color=c, label="start" if t == 0 else "end")
    lo, hi = P.reshape(-1, 3).min(0), P.reshape(-1, 3).max(0)
    mid, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-3)
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_zlim(mid[2] - half, mid[2] + half)
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_zlabel("z [m]")
    ax.legend(loc="upper left")
    ax.set_title(f"{flow.object_name or 'object'}: {flow.num_points} points, {T} frames, {flow.duration:.2f} s")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _overlay(flow, video: str, out: Path) -> None:
    import cv2

    from flows.extract.camera import Camera
    from flows.extract.video import read_video, write_video

    if flow.intrinsics is None or flow.extrinsics is None:
        raise CommandError(f"{flow.origin}: the flow has no intrinsics/extrinsics; cannot overlay it on a video")
    frames, vfps = read_video(video)
    H, W = frames.shape[1:3]
    cam = Camera(K=flow.intrinsics, T_world_camera=flow.extrinsics, width=W, height=H)
    uv, z = cam.project(flow.points)
    T = min(len(frames), flow.num_frames)
    if len(frames) != flow.num_frames:
        print(f"warning: the video has {len(frames)} frames, the flow {flow.num_frames}; drawing {T}", file=sys.stderr)
    import matplotlib

    hsv = matplotlib.colormaps["hsv"](np.linspace(0, 1, flow.num_points, endpoint=False))
    colors = np.rint(hsv[:, :3] * 255).astype(int)
    outf = []
    for t in range(T):
        img = np.ascontiguousarray(frames[t].copy())
        for i in range(flow.num_points):
            if z[t, i] <= 0 or not np.all(np.isfinite(uv[t, i])):
                continue
            for s in range(max(0, t - 8), t):  # short tail
                a, b = uv[s, i], uv[s + 1, i]
                if z[s, i] > 0 and z[s + 1, i] > 0:
                    cv2.line(img, (int(round(a[0])), int(round(a[1]))), (int(round(b[0])), int(round(b[1]))),
                             tuple(int(c) for c in colors[i]), 1, cv2.LINE_AA)
            p = (int(round(uv[t, i, 0])), int(round(uv[t, i, 1])))
            if flow.visible[t, i]:
                cv2.circle(img, p, 2, tuple(int(c) for c in colors[i]), -1, cv2.LINE_AA)
            else:
                cv2.circle(img, p, 2, (128, 128, 128), 1, cv2.LINE_AA)
        outf.append(img)
    write_video(out, np.stack(outf), fps=vfps or flow.fps)


def _run_show(args: argparse.Namespace) -> int:
    from flows.format import ObjectFlow

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise CommandError(f"{out}: exists; pass --overwrite to replace it")
    flow = ObjectFlow.load(args.flow)
    if args.max_points and flow.num_points > args.max_points:
        flow = flow.subsample(args.max_points)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.video:
        _overlay(flow, args.video, out)
    else:
        _plot_3d(flow, out)
    print(f"wrote {out}")
    return 0


# ---------------------------------------------------------------------- dream
def _add_dream(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="start image (PNG/JPG), e.g. the env's first camera frame")
    p.add_argument("--prompt", required=True, help="task instruction, e.g. 'push the T-block into the target'")
    p.add_argument("-o", "--output", required=True,
                   help="output video (.mp4, .gif, or a folder of PNG frames); a sidecar OUTPUT.json is written too")
    p.add_argument("--model", default=None,
                   help="diffusers image-to-video pipeline: hub id or local folder (default Lightricks/LTX-Video)")
    p.add_argument("--pipeline", default=None, help="diffusers pipeline class, overriding the model's model_index.json")
    p.add_argument("--num-frames", type=int, default=None, help="frames to generate (default: the pipeline's)")
    p.add_argument("--fps", type=float, default=None, help="frame rate of the video (default: the model's)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pipeline's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the pipeline's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same video; default 0)")
    p.add_argument("--height", type=int, default=None,
                   help="generation height (default: the image's aspect ratio at about the pipeline's default size)")
    p.add_argument("--width", type=int, default=None, help="generation width (see --height)")
    p.add_argument("--native-size", action="store_true",
                   help="write frames at the generation size instead of resizing them to the start image's size")
    p.add_argument("--negative-prompt", default=None,
                   help="negative prompt (default with the hand prompt: robot, gripper, camera motion, ...)")
    p.add_argument("--no-hand-prompt", action="store_true",
                   help="do not append the human-hand / no-robot sentence to the prompt")
    p.add_argument("--no-static-camera-prompt", action="store_true",
                   help="do not append the fixed-camera sentence to the prompt")
    p.add_argument("--device", default="auto", help="torch device: auto (default: cuda, mps, cpu), cuda, cpu, ...")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="weights dtype (auto: bfloat16 on cuda, float32 on cpu)")
    p.add_argument("--offload", action="store_true", help="model CPU offload for small GPUs (needs accelerate)")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) of --model")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (and its sidecar)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_dream(args: argparse.Namespace) -> int:
    from flows.extract.video_model import dream_video

    options = {"device": args.device, "dtype": args.dtype, "offload": args.offload, "revision": args.revision,
               "pipeline": args.pipeline, "progress": not args.no_progress}
    if args.model:
        options["model"] = args.model
    res = dream_video(
        args.image, args.prompt, args.output, model=None, negative_prompt=args.negative_prompt,
        hand_prompt=not args.no_hand_prompt, static_camera_prompt=not args.no_static_camera_prompt,
        num_frames=args.num_frames, fps=args.fps, steps=args.steps, guidance=args.guidance, seed=args.seed,
        height=args.height, width=args.width, keep_size=not args.native_size, overwrite=args.overwrite,
        progress=not args.no_progress, generator_options=options,
    )
    T, H, W = res.frames.shape[:3]
    print(f"wrote {res.video}: {T} frames {W}x{H} at {res.fps:g} fps ({res.metadata['settings']['pipeline']}, "
          f"seed {res.metadata['seed']}, {res.metadata['elapsed_s']:.1f} s + {res.metadata['load_s']:.1f} s loading); "
          f"settings in {res.sidecar}")
    print(f"next: python -m flows extract {res.video} --object NAME --camera camera.json "
          f"--generator {shlex.quote(res.metadata['generator'])} -o flow.npz")
    return 0


# ---------------------------------------------------------------------- render-demo
def _add_render_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("env_id", help="task whose scripted demonstration is rendered, e.g. D2F-PushT-v0")
    p.add_argument("-o", "--output", required=True,
                   help="output folder: video.mp4, depth.npz, mask.png, masks.npz, camera.json, ground_truth.npz, "
                        "demo.json")
    p.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    p.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of the demonstration (default: the shipped demo flow's; Cover-Bowl needs a divisor "
                        "of 100)")
    p.add_argument("--camera", default="auto",
                   help="scene camera name, or auto (default: the scene's 'demo' camera, else 'overview')")
    p.add_argument("--no-hand", action="store_true", help="do not draw the stand-in hand capsule")
    p.add_argument("--overwrite", action="store_true", help="replace the demo files of an existing folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_render_demo(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if args.width <= 0 or args.height <= 0:
        raise CommandError(f"--width/--height must be > 0, got {args.width}x{args.height}")
    try:  # the simulator side: imported here only, data flows video -> flows -> d2f_envs
        from d2f_envs.render_demo import DEMO_FILES, check_env_id, extract_arguments, render_demo, write_demo
    except ImportError as exc:
        raise CommandError(f"render-demo needs the simulator package d2f_envs (MuJoCo): {exc}") from None
    try:
        check_env_id(args.env_id)
    except KeyError as exc:
        raise CommandError(exc.args[0]) from None
    existing = [out / f for f in DEMO_FILES if (out / f).exists()]
    if existing and not args.overwrite:  # before the minutes of rendering, not after
        raise CommandError(f"{existing[0]}: exists; pass --overwrite to replace the demo files in {out}")
    try:
        demo = render_demo(args.env_id, width=args.width, height=args.height, camera=args.camera, fps=args.fps,
                           hand=not args.no_hand, progress=not args.no_progress)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    write_demo(demo, out, overwrite=args.overwrite)
    T, H, W = demo.depth.shape
    gt = demo.ground_truth
    print(f"wrote {out}/: {T} frames {W}x{H} at {demo.fps:g} fps from camera {demo.camera_name!r}; "
          f"ground truth {gt.num_points} points, {gt.visible.mean():.0%} visible; "
          f"render {demo.timings['render_s_per_frame'] * 1e3:.0f} ms/frame")
    print("next: python -m flows " + shlex.join(extract_arguments(args.env_id, out, demo.flow.object_name)))
    return 0


# ---------------------------------------------------------------------- calibrate
def _add_calibrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("pairs", help="CSV with columns x,y,z (metres, robot base frame) and u,v (pixels), one marker per row")
    p.add_argument("--camera", required=True, help="camera.json (its K is used; its T_world_camera is checked)")
    p.add_argument("--solve", action="store_true", help="fit T_world_camera to the pairs (keeping K); needs -o")
    p.add_argument("-o", "--output", default=None, help="--solve: write the calibrated camera.json here")
    p.add_argument("--depth", default=None, help="depth of the same view (npz/npy/PNG folder, as for extract): "
                                                 "also check the depth at each marker's pixel")
    p.add_argument("--frame", type=int, default=0, help="--depth: which frame (default 0)")
    p.add_argument("--max-px", type=float, default=2.0, help="median reprojection error (px) accepted (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")


def _run_calibrate(args: argparse.Namespace) -> int:
    from flows.extract.calibrate import check_extrinsics, load_correspondences, solve_extrinsics
    from flows.extract.camera import Camera

    camera = Camera.load(args.camera)
    points, pixels = load_correspondences(args.pairs)
    if args.solve:
        if not args.output:
            raise CommandError("--solve needs -o OUT.json (the camera file given is never overwritten)")
        out = Path(args.output)
        if out.exists() and not args.overwrite:
            raise CommandError(f"{out}: exists; pass --overwrite to replace it")
        before = check_extrinsics(camera, points, pixels)
        camera, _ = solve_extrinsics(camera, points, pixels)
        moved = np.linalg.norm(camera.T_world_camera[:3, 3] - Camera.load(args.camera).T_world_camera[:3, 3])
        print(f"fitted T_world_camera to {len(points)} pairs: median reprojection {before.median_px:.1f} px before, "
              f"camera moved {100 * moved:.1f} cm")
    depth = None
    if args.depth:
        from flows.extract.depth.measured import load_depth

        frames = load_depth(args.depth)
        if not 0 <= args.frame < len(frames):
            raise CommandError(f"{args.depth}: --frame {args.frame} out of range (0..{len(frames) - 1})")
        depth = frames[args.frame]
    check = check_extrinsics(camera, points, pixels, depth)
    print(" pair   reprojection (px)" + ("   depth error (mm)" if depth is not None else ""))
    for i, e in enumerate(check.reprojection_px):
        d = "" if depth is None else f"   {1e3 * check.depth_error_m[i]:+10.1f}"
        print(f"{i + 1:5d}   {e:17.2f}{d}")
    line = f"median {check.median_px:.2f} px, max {check.max_px:.2f} px"
    if check.median_depth_error_m is not None:
        line += f"; median |depth error| {1e3 * check.median_depth_error_m:.1f} mm"
    if check.behind_camera:
        line += f"; {check.behind_camera} point(s) behind the camera"
    if args.solve:
        camera.save(out)
        print(f"wrote {out}")
    if check.ok(max_median_px=args.max_px):
        print(f"OK: {line}")
        return 0
    print(f"NOT CALIBRATED: {line} (accepted: median <= {args.max_px:g} px, depth <= 10 mm). "
          "Check the pairs (the worst rows above) or fit the pose with --solve -o OUT.json")
    return 2


# ---------------------------------------------------------------------- main
# name -> (help, add_arguments, run); other commands (e.g. "dream", "render-demo") can be added here
COMMANDS: Dict[str, Tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "extract": ("extract a 3D object flow from a video", _add_extract, _run_extract),
    "show": ("plot a flow (3D trajectories) or overlay it on a video", _add_show, _run_show),
    "dream": ("generate a task video from a start image and an instruction (image-to-video model)",
              _add_dream, _run_dream),
    "render-demo": ("render a task's scripted demonstration (video, depth, mask, camera, ground-truth flow)",
                    _add_render_demo, _run_render_demo),
    "calibrate": ("check or fit a camera's pose in the robot frame from markers the robot measured",
                  _add_calibrate, _run_calibrate),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows", description="dream2flow-gym object-flow tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (CommandError, FileNotFoundError, FileExistsError, ValueError, ImportError, OSError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"python -m flows {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
