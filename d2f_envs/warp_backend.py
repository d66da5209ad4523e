"""``backend="warp"`` of :class:`~d2f_envs.vector.BatchedFlowVectorEnv`: every sub-env's physics in one
MuJoCo Warp ``Data`` with ``nworld = num_envs`` (GPU when there is one, else Warp's CPU device).

Only the physics moves: the sub-envs keep their controllers, rewards, bindings and observations, and the
vector env computes reward and observation with the same numpy code as for ``backend="mujoco"``. One
control step is

1. each sub-env's own controller writes its ``data.ctrl`` (and ``data.eq_active``), copied into the
   host-side state of its world (:meth:`WarpSimGroup.set_inputs`);
2. the whole host-side state (``mjSTATE_INTEGRATION``'s fields: time, qpos, qvel, act, warm start,
   controls, mocap poses, equality switches, applied forces) is uploaded and ``mujoco_warp.step`` runs
   ``n_substeps`` times on all worlds (:meth:`WarpSimGroup.step`);
3. the state the step advanced (time, qpos, qvel, act, history, plastic, warm start) comes back, and each
   stepped sub-env's ``MjData`` becomes what ``mj_step`` would have left (:meth:`WarpSimGroup.get_data`):
   ``mj_forward`` by MuJoCo C of the state at the start of the last substep (MuJoCo computes poses and
   contacts before integrating), then the final state; so the env's own code (controller IK, the task's
   success test, proprioception) reads what it reads after its own ``mj_step``, and the reward's body and
   site poses are copied from it.

Uploading the whole state every step (a few KB per world) keeps one source of truth on the host: a reset
sub-env's world is written there, a world that must not advance this step (NEXT_STEP autoreset) simply
keeps its host row, and ``bind(name)`` gives the same kind of writable view as ``mujoco.batch.Batch.bind``.

What differs from ``backend="mujoco"`` (so results are close, not bit-identical; tests/test_warp_backend.py
measures how close): MuJoCo Warp computes in float32 and its solver, collision and contact ordering are its
own. MuJoCo C's divergence warnings (``BADQPOS``/``BADQVEL``, which reset the simulation inside ``mj_step``)
do not exist in MuJoCo Warp: a world whose qpos, qvel or act is non-finite or beyond MuJoCo's 1e10 limit
after a step, or whose contact/constraint buffers overflowed (``nconmax``/``njmax``: contacts or constraints
would have been dropped), counts as failed and its sub-env is truncated with the reason.

Supported: the rigid and articulated tasks (Push-T, Open Drawer, Open Door, Pick-and-Place) with every
robot, ``obs_mode="real"``, and the randomize keys that leave the model alone (``action_latency``, the
camera offsets). Refused at construction, saying why (:func:`check_supported`): domain randomisation that
edits the model (``friction``, ``mass``, ``damping``, ``kp``, ``size``), since all worlds share one device
``Model``; the granular task (pasta), whose pile diverges from MuJoCo C's within a few steps; the deformable
task (the cloth), whose flex and pinch were not validated on this backend.

``warp`` and ``mujoco_warp`` are imported only when this backend is constructed: ``d2f_envs`` imports without them.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Tuple

import mujoco
import numpy as np

INSTALL_HINT = "pip install 'dream2flow-gym[warp]'"

#: randomize keys that edit the sub-env's MjModel at its reset (d2f_envs.sim2real.DomainRandomizer)
MODEL_RANDOMIZE_KEYS = ("friction", "mass", "damping", "kp", "size")

#: the state fields a MuJoCo Warp step advances (read back after every step)
ADVANCED_FIELDS = ("time", "qpos", "qvel", "act", "history", "plastic", "qacc_warmstart")
#: the inputs of a step that the step does not change (the sub-env's code sets them)
INPUT_FIELDS = ("ctrl", "qfrc_applied", "xfrc_applied", "eq_active", "mocap_pos", "mocap_quat", "userdata")

#: MuJoCo's mjMAXVAL: beyond it MuJoCo C warns (BADQPOS/BADQVEL) and resets the simulation
MAX_VAL = 1e10


def import_warp() -> Tuple[Any, Any]:
    """``(warp, mujoco_warp)``, or an ImportError that says how to install them."""
    try:
        import warp as wp
        import mujoco_warp as mjw
    except ImportError as e:
        raise ImportError(
            f"backend='warp' needs the optional packages mujoco-warp and warp-lang ({e}); install them with "
            f"{INSTALL_HINT}, or use backend='mujoco'") from e
    return wp, mjw


def check_supported(env, env_id: str) -> None:
    """Refuse, saying why, what this backend cannot run the way a single env would."""
    if env.object_class == "deformable":
        raise NotImplementedError(
            f"{env_id}: backend='warp' does not run the deformable task: its cloth (a flex with the discrete "
            "integrator, grasped through eq_active pinch constraints) was not validated against MuJoCo C on "
            "MuJoCo Warp; use backend='mujoco'")
    if env.object_class == "granular":
        raise NotImplementedError(
            f"{env_id}: backend='warp' does not run the granular task: its pile of pieces is chaotic under "
            "MuJoCo Warp's float32 solver (same seed and actions: the pieces' poses differ by 1e-3 after one "
            "control step and by ~1 (m, rad) after ten, the flow index by up to 15 frames), so it would train "
            "on different physics than backend='mujoco'; use backend='mujoco'")
    rnd = getattr(env, "_randomizer", None)
    if rnd is not None:
        edits = [k for k in MODEL_RANDOMIZE_KEYS if k in rnd.ranges]
        if edits:
            raise NotImplementedError(
                f"{env_id}: backend='warp' cannot randomise {edits}: they edit each sub-env's own MjModel at "
                "its reset, while all worlds of the warp backend share one device Model (and its derived "
                "constants); use backend='mujoco' (randomize keys that leave the model alone, "
                "action_latency and the camera offsets, are supported)")


def resolve_device(wp, device: Optional[str]) -> str:
    """``device`` checked against Warp's devices; None: the first CUDA device if any, else the CPU."""
    if device is None:
        return "cuda:0" if wp.get_cuda_device_count() > 0 else "cpu"
    names = [d.alias for d in wp.get_devices()]
    dev = str(device)
    if dev == "cuda":
        dev = "cuda:0"
    if dev not in names:
        raise ValueError(f"device {device!r} is not one of Warp's devices {names}")
    return dev


def _overflow_names(bits: int) -> List[str]:
    from mujoco_warp import OverflowType

    return [f.name for f in OverflowType if f.value and f.name != "ALL" and bits & f.value]


class WarpSimGroup:
    """All sub-envs' simulations as the worlds of one MuJoCo Warp Data (the vector env's only group).

    Offers what the vector env uses of its ``mujoco.batch`` groups: ``lo``/``hi``, :meth:`set_inputs`,
    :meth:`step`, :meth:`get_data`, :meth:`load`, ``xpos``/``xmat``/``site_xpos`` (host arrays, filled by
    :meth:`get_data`) and :meth:`bind` (the host-side state, uploaded before every step).
    """

    def __init__(self, model: mujoco.MjModel, nworld: int, *, device: Optional[str], nconmax: Optional[int],
                 njmax: Optional[int], want_poses: bool, nominal: mujoco.MjData):
        wp, mjw = import_warp()
        self._wp, self._mjw = wp, mjw
        self.device = resolve_device(wp, device)
        self.model = model
        self.lo, self.hi = 0, int(nworld)
        # contact and constraint buffers are fixed-size in MuJoCo Warp (MuJoCo C grows its arena instead).
        # Contacts: 4x the nominal scene's, at least 64 per world (pooled over worlds: naconmax = nworld *
        # nconmax). Constraints (per world, not pooled): every contact with the model's largest condim
        # (elliptic cone: condim rows; pyramidal: 2 (condim - 1)) plus two rows per dof (limits, friction
        # loss). Maxima over the scripted episodes with MuJoCo C vs these defaults: Push-T 4 contacts / 15
        # rows (64 / 202), door and drawer 8 / 33 (64 / 270), pick-and-place 11 / 41 (64 / 286), pasta
        # 90 / 486 (288 / 2168).
        rows = int(model.geom_condim.max()) if model.ngeom else 1
        if model.opt.cone == mujoco.mjtCone.mjCONE_PYRAMIDAL:
            rows = max(1, 2 * (rows - 1))
        default_nconmax = max(64, -(-4 * nominal.ncon // 16) * 16)
        self.nconmax = int(nconmax) if nconmax is not None else default_nconmax
        self.njmax = int(njmax) if njmax is not None else default_nconmax * rows + 2 * model.nv
        # (MuJoCo Warp skips collision detection altogether when the contact pool is empty, without an
        # overflow: nconmax=0 would silently simulate without contacts)
        if self.nconmax < 1 or self.njmax < 1:
            raise ValueError(f"nconmax and njmax must be >= 1, got {self.nconmax}, {self.njmax}")
        self._overflow_warned = False
        with wp.ScopedDevice(self.device):
            self.m = mjw.put_model(model)
            # overflows are reported per sub-env (truncation_reason, one Python warning), not printed by
            # the kernels at every substep
            self.m.opt.warn_overflow = 0
            self.d = mjw.make_data(model, nworld=self.hi, nconmax=self.nconmax, njmax=self.njmax)
        # the host-side state: one row per world, the MjData's dtypes (float64; eq_active uint8)
        self.fields = [name for name in ADVANCED_FIELDS + INPUT_FIELDS if np.size(getattr(nominal, name))]
        self.host: Dict[str, np.ndarray] = {}
        for name in self.fields:
            x = np.asarray(getattr(nominal, name))
            self.host[name] = np.zeros((self.hi,) + x.shape, dtype=x.dtype)
        self._advanced = [name for name in ADVANCED_FIELDS if name in self.host]
        self._prev = {name: self.host[name].copy() for name in self._advanced}  # before each world's last step
        self.ctrl = self.host["ctrl"]
        self._eq = self.host.get("eq_active")
        self.want_poses = want_poses
        if want_poses:
            self.xpos = np.zeros((self.hi, model.nbody, 3))
            self.xmat = np.zeros((self.hi, model.nbody, 9))
            self.site_xpos = np.zeros((self.hi, model.nsite, 3))

    @property
    def batch(self) -> "WarpSimGroup":
        """(``BatchedFlowVectorEnv.simulation(k)`` returns ``(group.batch, row)`` for either backend.)"""
        return self

    def bind(self, name: str) -> np.ndarray:
        """The host-side ``name`` of all worlds, (nworld, ...): uploaded before every step, so a write
        changes the simulation (as ``Batch.bind`` does for the mujoco backend)."""
        if name not in self.host:
            raise KeyError(f"{name!r} is not part of the warp backend's state; one of {self.fields}")
        return self.host[name]

    def load(self, row: int, data: mujoco.MjData) -> None:
        """World ``row`` becomes ``data``'s state (after the sub-env's reset)."""
        for name in self.fields:
            self.host[name][row] = getattr(data, name)

    def set_inputs(self, row: int, data: mujoco.MjData) -> None:
        """What the sub-env's controller just wrote: ``ctrl`` and the equality switches."""
        self.ctrl[row] = data.ctrl
        if self._eq is not None:
            self._eq[row] = data.eq_active

    def step(self, ks: List[int], nstep: int) -> Dict[int, str]:
        """Advance the worlds of sub-envs ``ks`` by ``nstep`` steps; returns {row: reason} of those that failed.

        MuJoCo Warp steps every world: the others (sub-envs reset instead of stepped this control step)
        keep their host rows, which the next upload restores."""
        wp, mjw, d = self._wp, self._mjw, self.d
        with wp.ScopedDevice(self.device):
            for name in self.fields:
                arr = getattr(d, name)
                src = self.host[name]
                arr.assign(src.astype(bool) if name == "eq_active" else src.astype(np.float32))
            for _ in range(nstep - 1):
                mjw.step(self.m, d)
            # the state at the start of the last step: what MuJoCo C's MjData derives its poses and contacts
            # from after mj_step (they are computed before the integration); get_data reproduces that
            prev = ({name: getattr(d, name).numpy().copy() for name in self._advanced} if nstep > 1
                    else {name: self.host[name].copy() for name in self._advanced})
            mjw.step(self.m, d)
            new = {name: getattr(d, name).numpy() for name in self._advanced}
            overflow = d.overflow.numpy().copy()
            d.overflow.zero_()  # the bits accumulate until cleared
        rows = np.asarray(ks, dtype=np.intp) - self.lo
        for name, arr in new.items():
            self.host[name][rows] = arr[rows]
            self._prev[name][rows] = prev[name][rows]
        failed: Dict[int, str] = {}
        from mujoco_warp import OverflowType

        fatal = int(OverflowType.ALL) & ~int(OverflowType.ITERATIONS | OverflowType.LS_ITERATIONS)
        for r in rows[(overflow[rows] & fatal) != 0].tolist():
            # (a contact overflow is flagged in every world: the contact pool is shared, any world may have
            # lost contacts, so all are truncated)
            failed[r] = (f"MuJoCo Warp buffer overflow {_overflow_names(int(overflow[r]))} (nconmax={self.nconmax}, "
                         f"njmax={self.njmax} per world; contacts or constraints were dropped): pass larger "
                         "nconmax=/njmax= to the vector env")
        if failed and not self._overflow_warned and any("overflow" in r for r in failed.values()):
            self._overflow_warned = True  # once: the truncation reasons tell each time
            warnings.warn(next(r for r in failed.values() if "overflow" in r) + "; the sub-env is truncated")
        for name in ("qpos", "qvel", "act"):
            if name not in self.host:
                continue
            x = self.host[name][rows]
            bad = ~(np.abs(x) <= MAX_VAL).all(axis=1)  # NaN compares False: caught too
            for r in rows[bad].tolist():
                failed.setdefault(r, f"non-finite or |{name}| > {MAX_VAL:g} after the step (MuJoCo C's "
                                     "BADQPOS/BADQVEL; MuJoCo Warp has no such warnings)")
        return failed

    def get_data(self, row: int, data: mujoco.MjData) -> None:
        """``data`` <- world ``row`` as ``mj_step`` leaves an MjData: the derived quantities (poses, contacts,
        the inputs of the arms' Jacobians) are ``mj_forward``'s, by MuJoCo C, of the state at the start of
        the last step, and the state (time, qpos, qvel, act, warm start) is the one the step ended in."""
        for h in (self._prev, self.host):
            for name in self._advanced:
                if name == "time":
                    data.time = float(h["time"][row])
                else:
                    getattr(data, name)[:] = h[name][row]
            if h is self._prev:
                mujoco.mj_forward(self.model, data)
        if self.want_poses:
            self.xpos[row] = data.xpos
            self.xmat[row] = data.xmat
            self.site_xpos[row] = data.site_xpos
