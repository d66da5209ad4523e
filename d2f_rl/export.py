"""Export a trained run's deterministic policy to ONNX, for deployment without torch or SB3.

``python eval.py -f logs/sac/D2F-PushT-v0_1 --export onnx`` (or :func:`export_run`) writes
two files into the run folder (or ``--export-dir``)::

    policy.onnx   obs (float64, [batch, n_obs]) -> action (float32, [batch, n_act]), the whole chain:
                  VecNormalize's observation normalisation, the deterministic actor, the action
                  post-processing of SB3's ``predict``
    policy.json   what a robot needs besides the graph: observation layout (name -> [start, stop]),
                  size and dtype, where the TCP position sits in it, action bounds and dofs,
                  control rate, workspace box, env id + kwargs, algo, versions, source model,
                  the sha256 of policy.onnx and the export's own check against SB3

The graph computes, for one observation ``o`` (cast to the env's observation dtype first, as
the run's ``Float32Observation`` wrapper does, which :mod:`d2f_rl.deploy` does for you)::

    x = clip((o - obs_rms.mean) / sqrt(obs_rms.var + epsilon), -clip_obs, clip_obs)  # float64, as SB3
    x = float32(x)
    SAC: a = tanh(mu(latent_pi(x)));  a = low + 0.5 * (a + 1) * (high - low)          # unscale_action
    PPO: a = action_net(mlp_extractor.forward_actor(x));  a = min(max(a, low), high)  # predict's clip

An asymmetric actor-critic (:class:`d2f_rl.policies.AsymmetricActorCriticPolicy`, trained on
``d2f_rl.wrappers.PrivilegedObservation``'s ``[real | privileged]`` observation) is exported with
its actor's input only: ``obs`` has ``actor_dim`` entries (the env's real observation, layout
``env.unwrapped.obs_layout``), the normalisation constants are cut to them, policy.json's env
wrapper drops ``PrivilegedObservation`` (so ``deploy --sim`` builds the real observation) and its
``asymmetric`` entry records the training observation (sizes, privileged layout, wrapper). The
check below feeds SB3 the whole training observation and the graph its first ``actor_dim``
entries, so it also checks that the actor ignores the privileged ones.

The normalisation runs in float64 with SB3's exact constants, so the float32 input of the net
is bit-identical to what ``VecNormalize.normalize_obs`` feeds ``model.predict``. Before any file
is written the exported graph is run with onnxruntime on observations from a real rollout of
the env and compared with ``model.predict(deterministic=True)``; the export fails if any
action differs by more than ``tolerance`` (default 1e-5).

Exporter: torch's TorchScript-based ``torch.onnx.export(..., dynamo=False)`` (needs only the
``onnx`` package; the dynamo exporter would also need ``onnxscript``). Opset 17.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import platform
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .utils import atomic_file, is_run_dir, read_yaml
from .wrappers import deployable_wrapper_spec

EXPORT_FORMATS = ("onnx",)
SUPPORTED_ALGOS = ("sac", "ppo")
ONNX_FILE = "policy.onnx"
META_FILE = "policy.json"
INPUT_NAME = "obs"
OUTPUT_NAME = "action"
OPSET = 17
FORMAT_VERSION = "d2f-policy/1"
#: names an env may give the TCP position in its obs_layout (checked before searching proprio)
TCP_LAYOUT_NAMES = ("tcp", "tcp_pos", "tcp_position")


class ExportError(RuntimeError):
    """The run cannot be exported (unsupported policy, failed check against SB3, existing files)."""


# --------------------------------------------------------------------------- the graph
def _actor_module(model: Any, normalizer: Any, n_in: Optional[int] = None):
    """A ``torch.nn.Module``: float64 observation batch -> float32 action batch, as SB3's predict.

    ``n_in``: the graph's input size when the actor reads only the first ``n_in`` observation
    entries (:class:`d2f_rl.policies.AsymmetricActorCriticPolicy`); the normalisation constants
    are cut to those entries. None: the whole observation."""
    import torch
    from gymnasium import spaces
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.distributions import DiagGaussianDistribution, StateDependentNoiseDistribution
    from stable_baselines3.common.policies import BasePolicy

    policy = model.policy
    if not isinstance(policy.observation_space, spaces.Box):
        raise ExportError(f"only Box observations can be exported, got {policy.observation_space}")
    if not isinstance(policy.action_space, spaces.Box):
        raise ExportError(f"only Box actions can be exported, got {policy.action_space}")

    if isinstance(model, SAC):
        actor = policy.actor

        def mean_action(x):
            latent = actor.latent_pi(actor.extract_features(x, actor.features_extractor))
            return torch.tanh(actor.mu(latent))  # the mode of the squashed Gaussian (also with gSDE)
    elif isinstance(model, PPO):
        dist = policy.action_dist
        if isinstance(dist, StateDependentNoiseDistribution):
            squash = dist.bijector is not None
        elif type(dist) is DiagGaussianDistribution:
            squash = False
        else:
            raise ExportError(f"PPO with a {type(dist).__name__} action distribution is not supported")

        def mean_action(x):
            features = BasePolicy.extract_features(policy, x, policy.pi_features_extractor)
            mean = policy.action_net(policy.mlp_extractor.forward_actor(features))
            return torch.tanh(mean) if squash else mean
    else:
        raise ExportError(f"unsupported algorithm {type(model).__name__}; supported: {list(SUPPORTED_ALGOS)}")

    low = np.asarray(policy.action_space.low, dtype=np.float32)
    high = np.asarray(policy.action_space.high, dtype=np.float32)
    squash_output = bool(policy.squash_output)
    norm = normalizer is not None and bool(normalizer.norm_obs)
    if norm:
        mean = np.asarray(normalizer.obs_rms.mean, dtype=np.float64)
        denom = np.sqrt(normalizer.obs_rms.var + normalizer.epsilon)  # the same numpy expression as SB3
        if n_in is not None:  # element-wise: the actor's entries are normalised as in the full vector
            mean, denom = mean[:n_in], np.asarray(denom)[:n_in]
        clip = float(normalizer.clip_obs)

    class Exported(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.policy = policy
            if norm:
                self.register_buffer("obs_mean", torch.from_numpy(mean.copy()))
                self.register_buffer("obs_denom", torch.from_numpy(np.asarray(denom, dtype=np.float64).copy()))
            self.register_buffer("low", torch.from_numpy(low.copy()))
            self.register_buffer("high", torch.from_numpy(high.copy()))
            self.register_buffer("span", torch.from_numpy((high - low).astype(np.float32)))

        def forward(self, obs):
            x = obs
            if norm:
                x = torch.clamp((x - self.obs_mean) / self.obs_denom, -clip, clip)
            a = mean_action(x.to(torch.float32))
            if squash_output:  # BasePolicy.unscale_action, float32 like SB3's numpy
                return self.low + (0.5 * (a + 1.0) * self.span)
            return torch.maximum(torch.minimum(a, self.high), self.low)  # np.clip(actions, low, high)

    module = Exported().eval()
    info = {
        "squashed": squash_output,
        "postprocess": "unscale_action" if squash_output else "clip",
        "normalization": {
            "in_graph": norm,
            "epsilon": float(normalizer.epsilon) if norm else None,
            "clip_obs": float(normalizer.clip_obs) if norm else None,
        },
    }
    return module, info


def onnx_bytes(module: Any, n_obs: int) -> bytes:
    """The module as an ONNX model (dynamic batch axis)."""
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        # torch >= 2.9 warns that the TorchScript exporter is the legacy one; it is the one that
        # needs no onnxscript, and it exports these small MLP graphs exactly
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        with torch.no_grad():
            torch.onnx.export(
                module, (torch.zeros(1, n_obs, dtype=torch.float64),), buf, dynamo=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=OPSET,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    data = buf.getvalue()
    import onnx

    onnx.checker.check_model(onnx.load_from_string(data))
    return data


# --------------------------------------------------------------------------- env facts
def obs_layout(env: Any) -> Dict[str, List[int]]:
    """``{name: [start, stop]}`` from ``env.unwrapped.obs_layout``."""
    layout = getattr(env.unwrapped, "obs_layout", None)
    if not layout:
        return {}
    return {name: [int(s.start), int(s.stop)] for name, s in layout.items()}


def find_tcp_slice(layout: Dict[str, List[int]], observations: np.ndarray, tcp: np.ndarray) -> Optional[List[int]]:
    """Where the TCP position (3 entries) sits in the observation, or None if not found unambiguously.

    An ``obs_layout`` entry named ``tcp``/``tcp_pos``/``tcp_position`` wins; otherwise the
    ``proprio`` block is searched for the one 3-entry window that equals the measured TCP
    position at every recorded step (each robot adapter places it differently in proprio).
    """
    for name in TCP_LAYOUT_NAMES:
        if name in layout and layout[name][1] - layout[name][0] == 3:
            return list(layout[name])
    if "proprio" not in layout or len(observations) < 2 or np.ptp(tcp, axis=0).max() <= 0:
        return None
    lo, hi = layout["proprio"]
    found = [s for s in range(lo, hi - 2)
             if np.allclose(observations[:, s:s + 3], tcp, rtol=0, atol=1e-6)]
    return [found[0], found[0] + 3] if len(found) == 1 else None


def rollout_observations(env: Any, policy: Any, steps: int, seed: int, resets: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``(observations, tcp positions)`` from running ``policy`` (obs -> action) in ``env``, then the
    first observation of ``resets`` more episodes (their random start states make the TCP move even
    when the policy barely does)."""
    base = env.unwrapped
    tcp_of = (lambda: np.array(base.robot.tcp_pos(base.data), dtype=np.float64)) \
        if hasattr(base, "robot") and hasattr(base, "data") else (lambda: np.full(3, np.nan))
    obs, _ = env.reset(seed=seed)
    observations, tcps = [], []
    for i in range(steps):
        observations.append(np.array(obs))
        tcps.append(tcp_of())
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        if terminated or truncated:
            obs, _ = env.reset(seed=seed + i + 1)
    for i in range(resets):
        obs, _ = env.reset(seed=seed + steps + 1 + i)
        observations.append(np.array(obs))
        tcps.append(tcp_of())
    return np.stack(observations), np.stack(tcps)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _versions() -> Dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name, dist in (("stable_baselines3", "stable_baselines3"), ("torch", "torch"), ("onnx", "onnx"),
                       ("onnxruntime", "onnxruntime"), ("numpy", "numpy"), ("gymnasium", "gymnasium"),
                       ("mujoco", "mujoco")):
        try:
            out[name] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def asymmetric_split(model: Any, env: Any) -> Optional[Dict[str, Any]]:
    """``{"actor_dim", "privileged_dim", "privileged_layout"}`` for an asymmetric actor-critic
    (:class:`d2f_rl.policies.AsymmetricActorCriticPolicy`), None for an ordinary policy. Refuses an
    ordinary policy on a :class:`~d2f_rl.wrappers.PrivilegedObservation` env: its actor reads
    simulator-only entries a robot cannot provide."""
    from .policies import AsymmetricActorCriticPolicy
    from .wrappers import find_privileged

    layer = find_privileged(env)
    if not isinstance(model.policy, AsymmetricActorCriticPolicy):
        if layer is not None:
            raise ExportError("the run's env appends privileged observations (PrivilegedObservation) but its policy "
                              f"({type(model.policy).__name__}) feeds them to the actor: a robot cannot provide them; "
                              "train with policy d2f_rl.policies.AsymmetricActorCriticPolicy")
        return None
    actor_dim = int(model.policy.actor_dim)
    if layer is not None and layer.actor_dim != actor_dim:
        raise ExportError(f"the policy's actor reads {actor_dim} entries, the env's PrivilegedObservation puts "
                          f"{layer.actor_dim} before the privileged part")
    n_obs = int(env.observation_space.shape[0])
    priv = {k: [int(v.start), int(v.stop)] for k, v in layer.layout.items() if k.startswith("privileged/")} \
        if layer is not None else {}
    return {"actor_dim": actor_dim, "privileged_dim": n_obs - actor_dim, "privileged_layout": priv}


# --------------------------------------------------------------------------- export
def export_paths(out_dir: Path) -> Tuple[Path, Path]:
    return Path(out_dir) / ONNX_FILE, Path(out_dir) / META_FILE


def export_run(
    run_dir,
    fmt: str = "onnx",
    out_dir=None,
    overwrite: bool = False,
    which: str = "auto",
    verify_steps: int = 64,
    tolerance: float = 1e-5,
    seed: int = 0,
) -> Dict[str, Any]:
    """Export a run folder's policy; returns ``{"onnx": path, "json": path, "meta": dict}``.

    Refuses to replace an existing ``policy.onnx``/``policy.json`` unless ``overwrite``.
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"export format {fmt!r} is not supported; choose from {list(EXPORT_FORMATS)}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"run folder {run_dir} does not exist")
    if not is_run_dir(run_dir):
        raise ExportError(f"{run_dir} is not a run folder (no args.yml)")
    algo = read_yaml(run_dir / "args.yml").get("algo")
    if algo not in SUPPORTED_ALGOS:
        raise ExportError(f"{run_dir}: algorithm {algo!r} cannot be exported; supported: {list(SUPPORTED_ALGOS)}")
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    onnx_path, json_path = export_paths(out_dir)
    existing = [p for p in (onnx_path, json_path) if p.exists()]
    if existing and not overwrite:
        raise ExportError(f"{', '.join(map(str, existing))} already exist(s); pass --overwrite (overwrite=True) "
                          f"to replace, or --export-dir for another folder")

    from .evaluate import load_run
    from .rollout import make_env, model_policy

    model, normalizer, env_id, env_kwargs, wrapper, model_path = load_run(run_dir, which, "cpu")
    env = make_env(env_id, env_kwargs, wrapper)
    try:
        n_obs = int(env.observation_space.shape[0])
        asym = asymmetric_split(model, env)  # None, or the actor's part of an asymmetric set-up
        n_in = asym["actor_dim"] if asym else n_obs  # the graph's input: the actor's observation only
        module, info = _actor_module(model, normalizer, n_in if asym else None)
        data = onnx_bytes(module, n_in)

        # ---- check the graph against SB3 on observations of a real rollout (and a few far-out ones
        # that exercise clip_obs) before anything is written
        observations, tcps = rollout_observations(env, model_policy(model, normalizer, True), verify_steps, seed,
                                                  resets=8)
        layout = obs_layout(env)  # the env's own (real) observation: the actor's part
        if asym and layout and max(b for _, b in layout.values()) != n_in:
            raise ExportError(f"the env's obs_layout covers {max(b for _, b in layout.values())} entries, "
                              f"the actor reads {n_in}")
        tcp_slice = find_tcp_slice(layout, observations[:, :n_in], tcps)
        obs_dtype = np.dtype(env.observation_space.dtype)
        rng = np.random.default_rng(seed)
        scale = np.abs(observations).max(axis=0) + 1.0
        far = (observations[:8] + rng.normal(size=(8, n_obs)) * 50.0 * scale).astype(obs_dtype)
        check = np.concatenate([observations.astype(obs_dtype), far])
        expected = np.stack([model.predict(normalizer.normalize_obs(o) if normalizer is not None else o,
                                           deterministic=True)[0] for o in check])
        import onnxruntime as ort

        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        # asymmetric: the graph gets only the actor's entries, SB3 the whole observation (the far-out
        # rows perturb the privileged entries too, so this also checks the actor ignores them)
        got = session.run([OUTPUT_NAME], {INPUT_NAME: check[:, :n_in].astype(np.float64)})[0]
        max_diff = float(np.abs(got - expected).max())
        if not max_diff <= tolerance:
            raise ExportError(f"the exported graph differs from SB3's predict by {max_diff:.3g} > {tolerance:g}")

        base = env.unwrapped
        workspace = getattr(type(base), "workspace", None)
        controller = getattr(base, "controller", None)
        spec = getattr(env, "spec", None)
        config = read_yaml(run_dir / "config.yml")
        vn_path = model_path.parent / "vecnormalize.pkl"
        meta = {
            "format": FORMAT_VERSION,
            "onnx_file": onnx_path.name,
            "onnx_sha256": _sha256(data),
            "opset": OPSET,
            "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
            "inputs": {INPUT_NAME: {"shape": ["batch", n_in], "dtype": "float64"}},
            "outputs": {OUTPUT_NAME: {"shape": ["batch", int(env.action_space.shape[0])], "dtype": "float32"}},
            "observation": {
                "size": n_in,
                "dtype": obs_dtype.name,  # cast to this first (the run's wrapper does), then to float64
                "layout": layout,
                "tcp_slice": tcp_slice,
                "normalization": info["normalization"],
            },
            "action": {
                "size": int(env.action_space.shape[0]),
                "dtype": np.dtype(env.action_space.dtype).name,
                "low": np.asarray(env.action_space.low, dtype=float).tolist(),
                "high": np.asarray(env.action_space.high, dtype=float).tolist(),
                "dofs": list(getattr(controller, "dofs", []) or []),
                "squashed": info["squashed"],
                "postprocess": info["postprocess"],
            },
            "control": {"dt": float(base.control_dt), "rate_hz": 1.0 / float(base.control_dt)}
            if hasattr(base, "control_dt") else None,
            "workspace": {"low": [float(v) for v in workspace[0]], "high": [float(v) for v in workspace[1]]}
            if workspace is not None else None,
            "env": {
                "id": env_id,
                "kwargs": env_kwargs,
                # the deployed observation: without the privileged wrapper (what --sim builds)
                "wrapper": deployable_wrapper_spec(config.get("env_wrapper")),
                "max_episode_steps": getattr(spec, "max_episode_steps", None),
            },
            "algo": algo,
            "asymmetric": ({**asym, "training_obs_size": n_obs, "training_wrapper": config.get("env_wrapper")}
                           if asym else None),
            "deterministic": True,
            "versions": _versions(),
            "source": {
                "run": str(run_dir.resolve()),
                "model": str(Path(model_path).resolve()),
                "vecnormalize": str(vn_path.resolve()) if normalizer is not None else None,
                "num_timesteps": int(model.num_timesteps),
            },
            "verification": {"observations": int(len(check)), "from_rollout": int(len(observations)),
                             "max_abs_diff": max_diff, "tolerance": tolerance, "seed": seed},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
    finally:
        env.close()

    # the graph first, then the JSON that names its hash: a crash in between leaves no valid pair
    with atomic_file(onnx_path) as tmp:
        tmp.write_bytes(data)
    with atomic_file(json_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=1, default=_json_default) + "\n")
    return {"onnx": onnx_path, "json": json_path, "meta": meta}


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"policy.json: cannot serialise {type(value).__name__} {value!r}")


def print_export(result: Dict[str, Any]) -> None:
    meta = result["meta"]
    obs, act = meta["observation"], meta["action"]
    print(f"exported {meta['algo']} policy of {meta['env']['id']}: {result['onnx']} + {result['json'].name}")
    print(f"  obs {obs['size']} ({obs['dtype']}), normalisation in graph: {obs['normalization']['in_graph']}, "
          f"tcp at {obs['tcp_slice']}")
    print(f"  action {act['size']} {act['dofs']} in [{min(act['low'])}, {max(act['high'])}] ({act['postprocess']})")
    if meta["control"]:
        print(f"  control rate {meta['control']['rate_hz']:g} Hz")
    v = meta["verification"]
    print(f"  onnxruntime vs SB3 predict on {v['observations']} observations: max |diff| {v['max_abs_diff']:.2g}")
    print(f"  deploy: python -m d2f_rl.deploy {result['onnx']} --sim {meta['env']['id']} --steps 80")


__all__ = ["EXPORT_FORMATS", "ExportError", "export_run", "find_tcp_slice", "obs_layout", "print_export"]
