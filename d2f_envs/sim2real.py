"""Sim-to-real parts of :class:`~d2f_envs.base.FlowEnv`: a camera point tracker and domain randomisation.

Two independent features, both off by default (``obs_mode="state"``, ``randomize=None``:
the env is bit-identical to one built without this module):

* ``obs_mode="real"``: the observation holds only what a robot can measure. The object's
  tracked points come from :class:`PointTracker`, a model of a camera keypoint tracker:
  Gaussian noise, dropouts (random, and occlusion by a ray cast from the task's camera),
  a latency of a few control steps, and (with randomisation) a per-episode camera
  extrinsics error. Configured by ``real_obs={...}`` (keys in :data:`REAL_OBS_DEFAULTS`).
* ``randomize={...}``: per-episode physics and sensing randomisation
  (:class:`DomainRandomizer`, keys in :data:`RANDOMIZE_KEYS`), drawn at each reset from the
  env's seeded ``np_random`` after restoring the nominal model, so effects never accumulate.

Every random draw comes from the env's ``np_random``: seeded runs are reproducible.
"""
from __future__ import annotations

import copy
import difflib
import math
from collections import deque
from numbers import Integral, Real
from typing import Any, Dict, Mapping, Optional, Tuple

import mujoco
import numpy as np

OBS_MODES = ("state", "real")

#: ``real_obs`` keys and their defaults
REAL_OBS_DEFAULTS: Dict[str, Any] = {
    "noise_std": 0.003,  # m, per coordinate, i.i.d. per point and step (a good RGB-D tracker: 2-5 mm)
    "dropout": 0.02,  # probability a visible point is lost in one measurement (tracker failures)
    "occlusion": True,  # drop points hidden from the camera (a ray cast from the camera)
    "latency": 2,  # control steps between a measurement and the observation that reports it
    "camera": "overview",  # the model camera the points are seen from
    "occlusion_margin": 0.01,  # m: a hit this close in front of the point is the point's own surface
    # also put the privileged (obs_mode="state") observation in info["privileged_obs"], for an
    # asymmetric actor-critic (critic on the state, actor on the real observation)
    "privileged_info": False,
}

#: ``randomize`` keys -> (kind, allowed interval of the range's ends). Every value is a
#: ``(low, high)`` range sampled uniformly once per episode.
RANDOMIZE_KEYS: Dict[str, Tuple[str, Tuple[float, float]]] = {
    # multiplicative factors on the nominal model
    "friction": ("scale", (0.05, 20.0)),  # every geom's sliding friction and every dof's frictionloss
    "mass": ("scale", (0.05, 20.0)),  # mass and inertia of every movable non-robot body (the object)
    "damping": ("scale", (0.0, 20.0)),  # every dof's damping
    "kp": ("scale", (0.05, 20.0)),  # actuator gains: kp of position servos (gain and bias together)
    # the manipulated object's linear dimensions (see DomainRandomizer); bounded tighter than the
    # factors above: the tasks' start layouts and grippers are sized for the nominal object
    "size": ("scale", (0.5, 1.5)),
    # integers, inclusive
    "action_latency": ("steps", (0, 10)),  # control steps before an action reaches the controller
    # per-axis additive offsets of the camera's extrinsics (only with obs_mode="real")
    "camera_translation": ("offset", (-0.1, 0.1)),  # m
    "camera_rotation": ("offset", (-0.3, 0.3)),  # rad (x, y, z rotation vector)
}
CAMERA_KEYS = ("camera_translation", "camera_rotation")


def _unknown(kind: str, name: str, valid) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f"{kind}: unknown key {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + f"; valid: {sorted(valid)}"


def validate_real_obs(cfg: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """``real_obs`` merged over :data:`REAL_OBS_DEFAULTS`, checked (ValueError/TypeError on bad input)."""
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, Mapping):
        raise TypeError(f"real_obs: expected a dict or None, got {type(cfg).__name__}")
    out = dict(REAL_OBS_DEFAULTS)
    for key, value in cfg.items():
        if key not in REAL_OBS_DEFAULTS:
            raise ValueError(_unknown("real_obs", key, REAL_OBS_DEFAULTS))
        out[key] = value
    for key in ("noise_std", "dropout", "occlusion_margin"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
            raise TypeError(f"real_obs[{key!r}]: expected a finite number, got {v!r}")
        out[key] = float(v)
    if out["noise_std"] < 0 or out["occlusion_margin"] < 0:
        raise ValueError("real_obs: noise_std and occlusion_margin must be >= 0")
    if not 0.0 <= out["dropout"] < 1.0:
        raise ValueError(f"real_obs['dropout'] must be in [0, 1), got {out['dropout']}")
    if isinstance(out["latency"], bool) or not isinstance(out["latency"], Integral) or not 0 <= out["latency"] <= 50:
        raise ValueError(f"real_obs['latency'] must be an integer number of control steps in [0, 50], got {out['latency']!r}")
    out["latency"] = int(out["latency"])
    for key in ("occlusion", "privileged_info"):
        if not isinstance(out[key], bool):
            raise TypeError(f"real_obs[{key!r}] must be True or False, got {out[key]!r}")
    if not isinstance(out["camera"], str):
        raise TypeError(f"real_obs['camera'] must be a camera name, got {out['camera']!r}")
    return out


def validate_randomize(cfg: Optional[Mapping[str, Any]], obs_mode: str) -> Optional[Dict[str, Tuple[float, float]]]:
    """``randomize`` checked and normalised to ``{key: (low, high)}`` in :data:`RANDOMIZE_KEYS` order."""
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping):
        raise TypeError(f"randomize: expected a dict of (low, high) ranges or None, got {type(cfg).__name__}")
    for key in cfg:
        if key not in RANDOMIZE_KEYS:
            raise ValueError(_unknown("randomize", key, RANDOMIZE_KEYS))
    out: Dict[str, Tuple[float, float]] = {}
    for key, (kind, (lo_ok, hi_ok)) in RANDOMIZE_KEYS.items():
        if key not in cfg:
            continue
        rng = cfg[key]
        if isinstance(rng, (str, bytes)) or not hasattr(rng, "__len__") or len(rng) != 2:
            raise TypeError(f"randomize[{key!r}]: expected a (low, high) pair, got {rng!r}")
        lo, hi = rng
        for v in (lo, hi):
            if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
                raise TypeError(f"randomize[{key!r}]: expected finite numbers, got {rng!r}")
            if kind == "steps" and not float(v).is_integer():
                raise TypeError(f"randomize[{key!r}]: expected whole control steps, got {rng!r}")
        if lo > hi:
            raise ValueError(f"randomize[{key!r}]: low {lo} > high {hi}")
        if lo < lo_ok or hi > hi_ok or (kind == "scale" and key != "damping" and lo <= 0):
            raise ValueError(f"randomize[{key!r}]: range {rng!r} outside the allowed [{lo_ok}, {hi_ok}]")
        if kind == "steps":
            out[key] = (int(lo), int(hi))
        else:
            out[key] = (float(lo), float(hi))
    if obs_mode != "real" and any(k in out for k in CAMERA_KEYS):
        raise ValueError(f"randomize: {CAMERA_KEYS} perturb the tracked points of obs_mode='real' only")
    return out


def rotation_from_vector(r: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``r`` (axis * angle, rad)."""
    q = np.empty(4)
    mujoco.mju_axisAngle2Quat(q, r / max(np.linalg.norm(r), 1e-300), float(np.linalg.norm(r)))
    R = np.empty(9)
    mujoco.mju_quat2Mat(R, q)
    return R.reshape(3, 3)


#: geom types ``randomize["size"]`` scales: MuJoCo's primitives, whose shape is the few numbers of
#: ``geom_size`` read at every collision (a mesh's vertices, a height field or an SDF are compiled data)
SIZE_GEOM_TYPES = {
    int(mujoco.mjtGeom.mjGEOM_SPHERE), int(mujoco.mjtGeom.mjGEOM_CAPSULE), int(mujoco.mjtGeom.mjGEOM_ELLIPSOID),
    int(mujoco.mjtGeom.mjGEOM_CYLINDER), int(mujoco.mjtGeom.mjGEOM_BOX),
}
#: the model constants mj_setConst derives from masses, inertias and geom sizes that the simulation
#: reads: subtree masses (subtree centres of mass), the inverse weights at qpos0 that set the softness
#: of every constraint (contacts, joint friction loss, limits), the joint-space inertia diagonal, dof
#: lengths, and the bounding volumes of collision detection (broadphase spheres and boxes, the bodies'
#: midphase trees). mj_setConst itself is not run on the env's model: it would also recompute fields a
#: task writes after compiling (Cover-Bowl's pinch anchors in eq_data)
DERIVED_FIELDS = (
    "body_subtreemass", "body_invweight0", "dof_invweight0", "dof_M0", "dof_length", "tendon_invweight0",
    "geom_rbound", "geom_aabb", "bvh_aabb",
)


def lowest_point_z(model: mujoco.MjModel, data: mujoco.MjData, g: int) -> float:
    """World height of primitive geom ``g``'s lowest point (its support point along -z) in ``data``."""
    R = data.geom_xmat[g].reshape(3, 3)  # row 2: the world z components of the geom's local axes
    s = model.geom_size[g]
    c = float(data.geom_xpos[g][2])
    t = int(model.geom_type[g])
    if t == mujoco.mjtGeom.mjGEOM_BOX:
        return c - float(np.abs(R[2]) @ s)
    if t == mujoco.mjtGeom.mjGEOM_SPHERE:
        return c - float(s[0])
    if t == mujoco.mjtGeom.mjGEOM_CAPSULE:  # axis: local z, half length s[1], radius s[0]
        return c - abs(R[2, 2]) * float(s[1]) - float(s[0])
    if t == mujoco.mjtGeom.mjGEOM_CYLINDER:
        return c - abs(R[2, 2]) * float(s[1]) - float(s[0]) * math.sqrt(max(1.0 - R[2, 2] ** 2, 0.0))
    if t == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
        return c - float(np.sqrt(((R[2] * s) ** 2).sum()))
    raise ValueError(f"lowest_point_z: geom {g} is not a primitive (type {t})")


class DomainRandomizer:
    """Per-episode physics randomisation of one env's own ``MjModel`` (see :data:`RANDOMIZE_KEYS`).

    The nominal values are copied at construction; :meth:`apply` restores them, then draws
    and applies one value per key, so nothing accumulates over episodes.

    ``size`` (factor s) scales the bodies ``size_bodies`` (the tracked object: the task's choice,
    ``FlowEnv._size_bodies``) about their own origins: every geom's size and position in the body
    frame, the body's sites and centre of mass alike, mass x s^3 and inertia x s^5 (the same
    density); the body frame itself, and so the flow's bound points in it, is not changed. So that an
    object resting on the table still rests on it, :meth:`place` then lifts it by (s - 1) x the height
    of its origin above its lowest point in the nominal state (``data`` at construction): a free body
    through its ``qpos`` after each reset, a body on joints in the world through its ``body_pos``.
    ``mass`` then multiplies the scaled mass and inertia (size first, then mass: a fixed order).
    Only primitive geoms can be scaled (:data:`SIZE_GEOM_TYPES`). After ``size`` or ``mass``, the
    constants MuJoCo's compiler derives from them (:data:`DERIVED_FIELDS`) are recomputed with
    ``mj_setConst`` on a private copy of the model and copied back.
    """

    def __init__(self, model: mujoco.MjModel, robot_prefix: str, ranges: Dict[str, Tuple[float, float]],
                 size_bodies: Optional[np.ndarray] = None, data: Optional[mujoco.MjData] = None):
        self.ranges = dict(ranges)
        self.nominal = {
            "geom_friction": model.geom_friction[:, 0].copy(),
            "dof_frictionloss": model.dof_frictionloss.copy(),
            "body_mass": model.body_mass.copy(),
            "body_inertia": model.body_inertia.copy(),
            "dof_damping": model.dof_damping.copy(),
            "gain": model.actuator_gainprm[:, 0].copy(),
            "bias": model.actuator_biasprm[:, 1].copy(),
        }
        # the object: movable bodies (not welded to the world) that are not the robot's
        self.object_bodies = np.array([
            b for b in range(1, model.nbody)
            if model.body_weldid[b] != 0 and not model.body(b).name.startswith(robot_prefix)
        ], dtype=np.intp)
        if "mass" in self.ranges and self.object_bodies.size == 0:
            raise ValueError("randomize['mass']: the scene has no movable non-robot body")
        self.size_bodies = np.zeros(0, dtype=np.intp)
        self.size = 1.0  # this episode's size factor (place() lifts by it)
        if "size" in self.ranges:
            self._init_size(model, data, size_bodies)
        self._scratch = None  # (model copy, data) for mj_setConst, made when mass or size is randomised
        if "mass" in self.ranges or "size" in self.ranges:
            self.nominal.update({name: getattr(model, name).copy() for name in DERIVED_FIELDS})
            scratch = copy.copy(model)
            self._scratch = (scratch, mujoco.MjData(scratch))

    def _init_size(self, model: mujoco.MjModel, data: Optional[mujoco.MjData], size_bodies) -> None:
        if size_bodies is None or data is None or len(size_bodies) == 0:
            raise ValueError("randomize['size']: no object bodies to scale were given")
        bodies = np.asarray(size_bodies, dtype=np.intp)
        geoms = np.flatnonzero(np.isin(model.geom_bodyid, bodies))
        for b in bodies.tolist():
            if not np.any(model.geom_bodyid[geoms] == b):
                raise ValueError(f"randomize['size']: body {model.body(b).name!r} has no geoms to scale")
        for g in geoms.tolist():
            if int(model.geom_type[g]) not in SIZE_GEOM_TYPES:
                kind = mujoco.mjtGeom(int(model.geom_type[g])).name
                raise ValueError(
                    f"randomize['size']: geom {model.geom(g).name or g!r} of body {model.body(model.geom_bodyid[g]).name!r} "
                    f"is a {kind}; only primitive geoms (box, sphere, capsule, cylinder, ellipsoid) can be resized at run time")
        # how each body is lifted by place(): (qpos address of a free joint's z, or -1) and the height of
        # its origin above its lowest point in the nominal state
        free, height = [], []
        for b in bodies.tolist():
            j = int(model.body_jntadr[b])
            is_free = model.body_jntnum[b] == 1 and model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE
            if not is_free and model.body_parentid[b] != 0:
                # (body_pos is in the parent's frame: "up" is the world's only for a child of the world)
                raise ValueError(f"randomize['size']: body {model.body(b).name!r} is neither free nor a child of the world")
            free.append(int(model.jnt_qposadr[j]) + 2 if is_free else -1)
            low = min(lowest_point_z(model, data, g) for g in geoms[model.geom_bodyid[geoms] == b].tolist())
            height.append(float(data.xpos[b][2]) - low)
        self.size_bodies = bodies
        self._size_geoms = geoms
        self._size_sites = np.flatnonzero(np.isin(model.site_bodyid, bodies))
        self._free_z = np.array(free, dtype=np.intp)
        self._height = np.array(height)
        self.nominal.update({
            "geom_size": model.geom_size.copy(), "geom_pos": model.geom_pos.copy(),
            "site_pos": model.site_pos.copy(), "body_ipos": model.body_ipos.copy(), "body_pos": model.body_pos.copy(),
        })

    def restore(self, model: mujoco.MjModel) -> None:
        n = self.nominal
        self.size = 1.0
        model.geom_friction[:, 0] = n["geom_friction"]
        model.dof_frictionloss[:] = n["dof_frictionloss"]
        model.body_mass[:] = n["body_mass"]
        model.body_inertia[:] = n["body_inertia"]
        model.dof_damping[:] = n["dof_damping"]
        model.actuator_gainprm[:, 0] = n["gain"]
        model.actuator_biasprm[:, 1] = n["bias"]
        for name in ("geom_size", "geom_pos", "site_pos", "body_ipos", "body_pos") + DERIVED_FIELDS:
            if name in n:
                getattr(model, name)[:] = n[name]

    def _scale_size(self, model: mujoco.MjModel, s: float) -> None:
        n = self.nominal
        g, st, b = self._size_geoms, self._size_sites, self.size_bodies
        model.geom_size[g] = n["geom_size"][g] * s
        model.geom_pos[g] = n["geom_pos"][g] * s
        model.site_pos[st] = n["site_pos"][st] * s
        model.body_ipos[b] = n["body_ipos"][b] * s
        model.body_mass[b] = n["body_mass"][b] * s ** 3
        model.body_inertia[b] = n["body_inertia"][b] * s ** 5
        jointed = b[self._free_z < 0]  # their origin's height is the model's: lift it there
        model.body_pos[jointed, 2] = n["body_pos"][jointed, 2] + (s - 1.0) * self._height[self._free_z < 0]

    def place(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Lift this episode's scaled free bodies (after the task placed them, before mj_forward) by
        (size - 1) x their origin's nominal height above their lowest point: an object on the table
        stays on it (objects turned about the vertical only, as every task's reset does)."""
        if self.size != 1.0:
            free = self._free_z >= 0
            data.qpos[self._free_z[free]] += (self.size - 1.0) * self._height[free]

    def _derive(self, model: mujoco.MjModel) -> None:
        """DERIVED_FIELDS recomputed by mj_setConst for the model's current masses and geometry."""
        scratch, sd = self._scratch
        for name in ("body_mass", "body_inertia", "body_ipos", "body_pos", "geom_size", "geom_pos", "site_pos"):
            getattr(scratch, name)[:] = getattr(model, name)
        mujoco.mj_resetData(scratch, sd)
        mujoco.mj_setConst(scratch, sd)
        for name in DERIVED_FIELDS:
            getattr(model, name)[:] = getattr(scratch, name)

    def apply(self, model: mujoco.MjModel, rng: np.random.Generator) -> Dict[str, Any]:
        """Restore the nominal model, draw this episode's values and apply them; returns the values."""
        self.restore(model)
        n, values = self.nominal, {}
        for key, (lo, hi) in self.ranges.items():  # RANDOMIZE_KEYS order: a fixed draw order
            kind = RANDOMIZE_KEYS[key][0]
            if kind == "scale":
                values[key] = float(rng.uniform(lo, hi))
            elif kind == "steps":
                values[key] = int(rng.integers(lo, hi + 1))
            else:
                values[key] = rng.uniform(lo, hi, size=3)
        if "friction" in values:
            model.geom_friction[:, 0] = n["geom_friction"] * values["friction"]
            model.dof_frictionloss[:] = n["dof_frictionloss"] * values["friction"]
        self.size = values.get("size", 1.0)
        if "size" in values:  # before mass: mass multiplies the scaled object's mass
            self._scale_size(model, self.size)
        if "mass" in values:
            b = self.object_bodies
            model.body_mass[b] *= values["mass"]
            model.body_inertia[b] *= values["mass"]  # same shape, scaled density
        if self._scratch is not None:
            self._derive(model)
        if "damping" in values:
            model.dof_damping[:] = n["dof_damping"] * values["damping"]
        if "kp" in values:
            # a position servo is force = kp * ctrl - kp * q - kv * qdot: gain and bias move together
            model.actuator_gainprm[:, 0] = n["gain"] * values["kp"]
            model.actuator_biasprm[:, 1] = n["bias"] * values["kp"]
        return values


class PointTracker:
    """A camera keypoint tracker's view of the object's points (``obs_mode="real"``).

    Each control step, :meth:`update` measures the true points:

    1. visibility: a point is lost when a ray from the camera to it hits another geom more
       than ``occlusion_margin`` in front of it (the tracked rigid body itself never
       occludes: a tracker follows an object's own faces), or any flex (a cloth, its own
       included) more than :attr:`flex_surface_tol` in front of it, or at random with
       ``dropout``. Flexes are tested with ``mj_rayFlex`` against their triangles (the
       sheet itself, not inflated by the collision radius), since ``mj_ray`` passes
       through them: a folded cloth's lower layer is hidden by the layer above it, the
       top layer stays visible;
    2. a visible point is measured with i.i.d. Gaussian noise (``noise_std`` per coordinate),
       then moved by the episode's camera extrinsics error (a rigid transform about the
       camera's position: the tracker maps camera to world with the nominal calibration);
    3. a lost point keeps its last reported value (hold-last-seen) with visibility flag 0.

    The observation reports the measurement of ``latency`` steps ago (a ring buffer). At
    reset the tracker is initialised with one measurement of every point (its first
    detection, noise and camera error included) that fills the buffer; flags follow
    visibility from then on.
    """

    #: m: a flex hit this close in front of a point is the point's own surface. The tracked points of
    #: a cloth lie on its triangles (FlexBinding; the shipped flow's are within 1e-8 m), so the ray
    #: meets their own triangle at the point; 2 mm absorbs the rays that graze the neighbouring,
    #: slightly bent triangles first. Much smaller than ``occlusion_margin`` (which is for other
    #: bodies' geoms near the object): a cloth folded flat has its layers a few mm apart
    flex_surface_tol = 0.002

    def __init__(self, model: mujoco.MjModel, cfg: Dict[str, Any], exclude_body: int = -1):
        self.cfg = cfg
        cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, cfg["camera"])
        if cam < 0:
            names = [model.camera(i).name for i in range(model.ncam)]
            raise ValueError(f"real_obs['camera']: no camera {cfg['camera']!r} in the model; cameras: {names}")
        self.camera_id = cam
        self.exclude_body = int(exclude_body)
        # mj_ray (mj_multiRay) does not hit flexes: each cloth (dim 2) or volume (dim 3) is ray cast on its
        # own, against its faces only (mj_rayFlex's vertex spheres and edge capsules are the collision
        # radius, mm thicker than the sheet a camera sees). Cables (dim 1) have no faces and are not
        # tested (no task has one)
        self._flexes = [f for f in range(model.nflex) if model.flex_dim[f] >= 2]
        self._vertid = np.zeros(1, dtype=np.int32)
        self.noise_std = cfg["noise_std"]
        self.dropout = cfg["dropout"]
        self.latency = cfg["latency"]
        self.cam_R = np.eye(3)  # camera extrinsics error of this episode
        self.cam_t = np.zeros(3)
        self._buffer: deque = deque(maxlen=self.latency + 1)
        self._held = np.zeros((0, 3))
        self._geomid = np.zeros(0, dtype=np.int32)
        self._dist = np.zeros(0)

    def set_camera_error(self, translation: Optional[np.ndarray], rotation: Optional[np.ndarray]) -> None:
        self.cam_t = np.zeros(3) if translation is None else np.asarray(translation, dtype=np.float64)
        self.cam_R = np.eye(3) if rotation is None else rotation_from_vector(np.asarray(rotation, dtype=np.float64))

    def visible(self, model: mujoco.MjModel, data: mujoco.MjData, points: np.ndarray) -> np.ndarray:
        """(K,) bool: each point is in the camera's line of sight (one batched ray cast)."""
        n = len(points)
        if self._dist.shape[0] != n:
            self._geomid = np.zeros(n, dtype=np.int32)
            self._dist = np.zeros(n)
        c = data.cam_xpos[self.camera_id]
        v = points - c
        length = np.linalg.norm(v, axis=1)
        dirs = (v / length[:, None]).ravel()
        mujoco.mj_multiRay(model, data, c, dirs, None, 1, self.exclude_body, self._geomid, self._dist, None, n, -1)
        hit = (self._dist >= 0) & (self._dist < length - self.cfg["occlusion_margin"])
        if self._flexes:
            rows = dirs.reshape(n, 3)
            for i in np.flatnonzero(~hit).tolist():
                for f in self._flexes:
                    dist = mujoco.mj_rayFlex(model, data, 0, False, False, True, False, f, c, rows[i], self._vertid)
                    if 0 <= dist < length[i] - self.flex_surface_tol:
                        hit[i] = True
                        break
        return ~hit

    def _measure(self, model, data, points: np.ndarray, rng: np.random.Generator, first: bool):
        k = len(points)
        vis = self.visible(model, data, points) if self.cfg["occlusion"] else np.ones(k, dtype=bool)
        if self.dropout > 0:
            vis &= rng.random(k) >= self.dropout
        noisy = points + rng.normal(0.0, self.noise_std, size=points.shape) if self.noise_std > 0 else points.copy()
        c = data.cam_xpos[self.camera_id]
        meas = (noisy - c) @ self.cam_R.T + c + self.cam_t
        if first:
            self._held = meas
        else:
            self._held = np.where(vis[:, None], meas, self._held)
        return self._held.copy(), vis.astype(np.float64)

    def reset(self, model, data, points: np.ndarray, rng: np.random.Generator) -> None:
        frame = self._measure(model, data, points, rng, first=True)
        self._buffer.clear()
        for _ in range(self.latency + 1):
            self._buffer.append(frame)

    def update(self, model, data, points: np.ndarray, rng: np.random.Generator) -> None:
        self._buffer.append(self._measure(model, data, points, rng, first=False))

    def reported(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(points (K, 3), visible (K,) in {0, 1})`` as of ``latency`` steps ago."""
        return self._buffer[0]


__all__ = [
    "CAMERA_KEYS", "DomainRandomizer", "OBS_MODES", "PointTracker", "RANDOMIZE_KEYS", "REAL_OBS_DEFAULTS",
    "validate_randomize", "validate_real_obs",
]
