"""An exported policy (``policy.onnx`` + ``policy.json``) run with onnxruntime and numpy only."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

META_FILE = "policy.json"


class PolicyFileError(RuntimeError):
    """policy.onnx / policy.json missing, unreadable or not a matching pair."""


def _meta_path_for(onnx_path: Path) -> Path:
    """``policy.json`` next to ``policy.onnx`` (``<stem>.json`` for other names)."""
    same_stem = onnx_path.with_suffix(".json")
    return same_stem if same_stem.is_file() else onnx_path.parent / META_FILE


class OnnxPolicy:
    """``policy(obs) -> action``: the exported chain (normalisation, actor, action bounds).

    ``obs`` is one observation ``(n_obs,)`` or a batch ``(B, n_obs)`` in the env's layout
    (``self.obs_layout``); it is cast to the env's observation dtype first (what the run's
    observation wrapper did in training) and fed to the graph as float64. Returns float32
    actions of shape ``(n_act,)`` or ``(B, n_act)``, within ``[action_low, action_high]``.
    ``threads``: onnxruntime's thread count (0: its default, all cores).
    """

    def __init__(self, onnx_path, meta_path=None, providers: Optional[Sequence[str]] = None, check_hash: bool = True,
                 threads: int = 1):
        import onnxruntime as ort

        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise PolicyFileError(f"{self.onnx_path}: no such ONNX file (export one with eval.py -f RUN --export onnx)")
        self.meta_path = Path(meta_path) if meta_path is not None else _meta_path_for(self.onnx_path)
        if not self.meta_path.is_file():
            raise PolicyFileError(f"{self.meta_path}: the policy's JSON is missing (it is written next to the .onnx)")
        try:
            self.meta: Dict[str, Any] = json.loads(self.meta_path.read_text())
        except json.JSONDecodeError as e:
            raise PolicyFileError(f"{self.meta_path}: not valid JSON ({e})") from None
        data = self.onnx_path.read_bytes()
        want = self.meta.get("onnx_sha256")
        if check_hash and want and hashlib.sha256(data).hexdigest() != want:
            raise PolicyFileError(f"{self.onnx_path} does not match {self.meta_path} (sha256 differs): "
                                  "the two files come from different exports")
        options = ort.SessionOptions()
        if threads > 0:  # one thread: the lowest latency for these small MLPs, and no fight with the robot's threads
            options.intra_op_num_threads = options.inter_op_num_threads = int(threads)
        self.session = ort.InferenceSession(data, options, providers=list(providers or ["CPUExecutionProvider"]))
        (inp,) = self.session.get_inputs()
        (out,) = self.session.get_outputs()
        self.input_name, self.output_name = inp.name, out.name
        obs, act = self.meta["observation"], self.meta["action"]
        self.obs_size = int(obs["size"])
        self.obs_dtype = np.dtype(obs.get("dtype", "float32"))
        self.action_size = int(act["size"])
        self.action_low = np.asarray(act["low"], dtype=np.float32)
        self.action_high = np.asarray(act["high"], dtype=np.float32)
        self.dofs: Tuple[str, ...] = tuple(act.get("dofs") or ())
        self.obs_layout: Dict[str, slice] = {k: slice(int(a), int(b)) for k, (a, b) in (obs.get("layout") or {}).items()}
        ts = obs.get("tcp_slice")
        self.tcp_slice: Optional[slice] = slice(int(ts[0]), int(ts[1])) if ts else None
        control = self.meta.get("control") or {}
        self.control_rate: Optional[float] = float(control["rate_hz"]) if control.get("rate_hz") else None
        ws = self.meta.get("workspace")
        self.workspace: Optional[Tuple[np.ndarray, np.ndarray]] = (
            (np.asarray(ws["low"], dtype=np.float64), np.asarray(ws["high"], dtype=np.float64)) if ws else None)
        self.env_id: Optional[str] = (self.meta.get("env") or {}).get("id")
        self.env_kwargs: Dict[str, Any] = dict((self.meta.get("env") or {}).get("kwargs") or {})

    def __call__(self, obs) -> np.ndarray:
        x = np.asarray(obs)
        single = x.ndim == 1
        if single:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.obs_size:
            raise ValueError(f"observation of shape {np.shape(obs)}, expected ({self.obs_size},) or (B, {self.obs_size})")
        x = x.astype(self.obs_dtype, copy=False).astype(np.float64)
        action = self.session.run([self.output_name], {self.input_name: x})[0]
        return action[0] if single else action

    def obs_part(self, obs, name: str) -> np.ndarray:
        """The named block of an observation (``obs_part(obs, "proprio")``)."""
        return np.asarray(obs)[..., self.obs_layout[name]]

    def __repr__(self) -> str:
        return (f"OnnxPolicy({str(self.onnx_path)!r}, env={self.env_id!r}, obs={self.obs_size}, "
                f"action={self.action_size} {list(self.dofs)}, rate={self.control_rate} Hz)")


def load_policy(onnx_path, meta_path=None, **kwargs) -> OnnxPolicy:
    return OnnxPolicy(onnx_path, meta_path, **kwargs)


__all__ = ["OnnxPolicy", "PolicyFileError", "load_policy"]
