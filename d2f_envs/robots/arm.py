"""Arms from robosuite's MJCF, driven by differential IK: the machinery every arm robot shares.

An :class:`ArmRobot` subclass names a robosuite model file (used as data only:
robosuite is never imported), its arm joints, the flange body, a home posture,
servo gains and a tool; :meth:`ArmRobot.attach` adapts the model with the
``MjSpec`` API before attaching it to the task scene:

* every joint that is not an arm joint (a floating base, a humanoid's legs,
  waist, head and other arm, Spot's legs) is **welded** at a fixed posture
  (:attr:`ArmRobot.frozen_q`, default 0): the same as ideal servos holding
  it, at no simulation cost;
* the model's torque motors -> joint position servos on the arm joints
  (critically damped, gains scaled by each joint's inertia, the motors' torque
  limits or :attr:`ArmRobot.torque_limits`) with gravity compensation on every
  body, so a pose is held without an integral term;
* collision geoms removed (only the tool touches anything), visual meshes kept
  for rendering;
* a tool on the flange: a vertical push cylinder (``tool = "push"``) or the
  shared two-finger :class:`~d2f_envs.robots.gripper.ParallelJawGripper`
  (``tool = "gripper"``), with the ``<name>/tcp`` site at the tool's tip /
  between the fingertips; its ``z`` axis points out of the flange, its ``x``
  axis along the fingers' closing direction.

Each control step :meth:`ArmRobot.command` runs one damped-least-squares IK
step on the 6-D TCP error (tool straight down, yaw = ``target_yaw``) with a
null-space pull towards the home posture, caps the joint step, and writes the
joint targets to ``data.ctrl``; :meth:`ArmRobot.reset` solves the IK
iteratively from the home posture. Targets the arm cannot reach with the tool
pointing down are pulled towards the shoulder first (:meth:`_within_reach`).
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import ClassVar, Dict, Optional, Sequence, Tuple

import mujoco
import numpy as np

from .base import RobotAdapter
from .gripper import ParallelJawGripper

#: robosuite's model folder, relative to the robosuite package folder
ROBOSUITE_ASSETS = "models/assets"


def robosuite_asset(relpath: str, robot: str = "") -> Path:
    """Path of a file under robosuite's ``models/assets`` folder, found without importing robosuite.

    Raises ImportError with an install hint when robosuite is missing or lacks the file."""
    spec = importlib.util.find_spec("robosuite")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    who = f"robot={robot!r}" if robot else "this robot"
    if not locations:
        raise ImportError(
            f"{who} uses a robot model shipped with robosuite, which is not installed; install it with "
            "`pip install robosuite` (only its MJCF/mesh files are used) or use a robot that needs no "
            "robosuite ('pusher', 'floating_gripper')"
        )
    path = Path(locations[0]) / ROBOSUITE_ASSETS / relpath
    if not path.is_file():
        raise ImportError(f"robosuite is installed but has no model at {path}; robosuite >= 1.5 is needed")
    return path


def _yaw_down_quat(yaw: float) -> np.ndarray:
    """Orientation (w, x, y, z) of a frame whose z axis points straight down and x axis has heading ``yaw``."""
    c, s = np.cos(yaw / 2), np.sin(yaw / 2)
    # Rz(yaw) * Rx(pi) = (c, 0, 0, s) * (0, 1, 0, 0)
    return np.array([0.0, c, s, 0.0])


# --------------------------------------------------------------------------- MjSpec edits
def adopt_options(child: mujoco.MjSpec, parent: mujoco.MjSpec) -> None:
    """Give ``child`` the physics options of ``parent`` (the parent's win anyway when attaching;
    this silences MuJoCo's attach-conflict warnings)."""
    for name in dir(parent.option):
        if name.startswith("_"):
            continue
        value = getattr(parent.option, name)
        if callable(value):
            continue
        try:
            setattr(child.option, name, value.copy() if isinstance(value, np.ndarray) else value)
        except (AttributeError, TypeError):
            pass


def strip_collision_geoms(spec: mujoco.MjSpec) -> None:
    """Delete every geom that collides (contype or conaffinity set) and the meshes only they used."""
    dropped = set()
    for geom in list(spec.geoms):
        if geom.contype or geom.conaffinity:
            dropped.add(geom.meshname)
            spec.delete(geom)
    used = {geom.meshname for geom in spec.geoms}
    for mesh in list(spec.meshes):
        if mesh.name in dropped and mesh.name not in used:
            spec.delete(mesh)


def weld_joint(spec: mujoco.MjSpec, joint: mujoco.MjsJoint, q: float = 0.0) -> None:
    """Delete ``joint``, leaving its body fixed to its parent at joint position ``q``
    (hinge or slide; a free joint is simply removed, welding the body where the model puts it)."""
    body = joint.parent
    kind = joint.type
    if kind == mujoco.mjtJoint.mjJNT_HINGE and q != 0.0:
        axis = np.asarray(joint.axis, dtype=np.float64)
        axis = axis / np.linalg.norm(axis)
        dq = np.r_[math.cos(q / 2), math.sin(q / 2) * axis]
        R0 = np.zeros(9)
        quat = np.asarray(body.quat, dtype=np.float64)
        quat = quat / np.linalg.norm(quat)
        mujoco.mju_quat2Mat(R0, quat)
        R0 = R0.reshape(3, 3)
        Rq = np.zeros(9)
        mujoco.mju_quat2Mat(Rq, dq)
        Rq = Rq.reshape(3, 3)
        p = np.asarray(joint.pos, dtype=np.float64)  # rotation about the joint's anchor (body frame)
        body.pos = np.asarray(body.pos) + R0 @ (p - Rq @ p)
        out = np.zeros(4)
        mujoco.mju_mulQuat(out, quat, dq)
        body.quat = out
    elif kind == mujoco.mjtJoint.mjJNT_SLIDE and q != 0.0:
        R0 = np.zeros(9)
        quat = np.asarray(body.quat, dtype=np.float64)
        mujoco.mju_quat2Mat(R0, quat / np.linalg.norm(quat))
        axis = np.asarray(joint.axis, dtype=np.float64)
        body.pos = np.asarray(body.pos) + R0.reshape(3, 3) @ (q * axis / np.linalg.norm(axis))
    elif kind in (mujoco.mjtJoint.mjJNT_BALL,) and q != 0.0:
        raise ValueError("a ball joint can only be welded at its reference posture")
    spec.delete(joint)


class ArmRobot(RobotAdapter):
    """An arm from robosuite's assets with position servos, gravity compensation and a tool, moved by DLS IK.

    ``proprio``: arm joint positions (rad), their velocities (rad/s), TCP
    position (world, m) and, with a gripper, the finger opening (m).
    """

    can_yaw = True

    # ----------------------------------------------------------- the model (set by subclasses)
    #: MJCF file, relative to robosuite's ``models/assets``
    model_file: ClassVar[str] = ""
    #: the joints the IK moves, base to flange (their dofs must be consecutive)
    arm_joints: ClassVar[Tuple[str, ...]] = ()
    #: the body the tool is mounted on, and the tool frame in it (z: out of the flange)
    flange_body: ClassVar[str] = ""
    flange_pos: ClassVar[Tuple[float, float, float]] = (0.0, 0.0, 0.0)
    flange_quat: ClassVar[Tuple[float, float, float, float]] = (1.0, 0.0, 0.0, 0.0)
    #: posture the IK starts from at reset and the null-space term pulls towards (rad)
    home_q: ClassVar[Tuple[float, ...]] = ()
    #: positions of the welded (non-arm) joints; missing ones are welded at 0
    frozen_q: ClassVar[Dict[str, float]] = {}

    # ----------------------------------------------------------- servos
    #: diagonal of the joint-space inertia (kg m^2, with the armature) the servo gains are scaled by,
    #: so that every joint has the same closed-loop bandwidth; None: taken from the model at home_q
    joint_inertia: ClassVar[Optional[Tuple[float, ...]]] = None
    #: rotor inertia added to each arm joint (kg m^2)
    armature: ClassVar[float] = 0.05
    #: closed-loop natural frequency of the joint servos (rad/s)
    servo_omega: ClassVar[float] = 40.0
    #: servo torque limits (N m) per arm joint; None: the model's motor ctrlranges
    torque_limits: ClassVar[Optional[Tuple[float, ...]]] = None

    # ----------------------------------------------------------- tool
    #: "push": a vertical cylinder; "gripper": the shared parallel-jaw gripper
    tool: ClassVar[str] = "push"
    tool_radius: ClassVar[float] = 0.015
    #: flange-to-tip length of the push tool (m)
    tool_length: ClassVar[float] = 0.15
    tool_mass: ClassVar[float] = 0.1
    #: gap between the flange and the gripper's palm (a connector capsule), m
    gripper_standoff: ClassVar[float] = 0.02

    # ----------------------------------------------------------- IK
    #: DLS damping (m, rad): keeps joint steps bounded near singularities
    ik_damping: ClassVar[float] = 0.02
    #: IK weights of the (x, y, z, rx, ry, rz) errors: where the target is out of reach the
    #: damped step gives up the least-weighted directions first
    ik_task_weight: ClassVar[Tuple[float, ...]] = (1.0, 1.0, 10.0, 2.0, 2.0, 2.0)
    #: largest joint target change per command (rad)
    max_joint_step: ClassVar[float] = 0.2
    #: null-space gain towards home_q per control step (fraction of the gap)
    null_gain: ClassVar[float] = 0.1

    # ----------------------------------------------------------- reach limit
    #: shoulder point (base frame, m) the reach is measured from
    shoulder_offset: ClassVar[Tuple[float, float, float]] = (0.0, 0.0, 0.0)
    #: wrist centre relative to the flange with the tool pointing down: ahead (radially) and above
    wrist_to_flange_ahead: ClassVar[float] = 0.0
    wrist_to_flange_down: ClassVar[float] = 0.0
    #: largest shoulder-to-wrist distance the IK is asked for (m); None: no limit
    max_shoulder_to_wrist: ClassVar[Optional[float]] = None

    gripper = ParallelJawGripper()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.has_gripper = cls.tool == "gripper"

    # --------------------------------------------------------------- geometry
    @property
    def tcp_below_flange(self) -> float:
        """Distance from the flange to the TCP along the tool axis (m)."""
        if self.tool == "gripper":
            return self.gripper_standoff + self.gripper.palm_top
        return self.tool_length

    @property
    def n_arm(self) -> int:
        return len(self.arm_joints)

    # --------------------------------------------------------------- building
    def _load(self) -> mujoco.MjSpec:
        return mujoco.MjSpec.from_file(str(robosuite_asset(self.model_file, self.name)))

    def _edit_model(self, arm: mujoco.MjSpec) -> None:
        """Model edits before the generic ones (override to add e.g. a carrier body); by default
        welds every non-arm joint at :attr:`frozen_q` and drops skyboxes."""
        for joint in list(arm.joints):
            if joint.name not in self.arm_joints:
                weld_joint(arm, joint, float(self.frozen_q.get(joint.name, 0.0)))
        for texture in list(arm.textures):
            if texture.type == mujoco.mjtTexture.mjTEXTURE_SKYBOX:
                arm.delete(texture)

    def attach(self, spec, base_pos, base_yaw, tcp_height):
        arm = self._load()
        self._edit_model(arm)
        # only the tool touches anything: drop collision geoms (and their meshes, which also saves
        # compiling them); visual meshes stay
        strip_collision_geoms(arm)

        # torque motors -> position servos on the arm joints; gravity compensation on every link
        motor_limit = {}
        for actuator in list(arm.actuators):
            motor_limit[actuator.target] = actuator.ctrlrange.copy()
            arm.delete(actuator)
        inertia = self.joint_inertia if self.joint_inertia is not None else np.ones(self.n_arm)
        kp = np.asarray(inertia, dtype=np.float64) * self.servo_omega**2
        kv = 2.0 * np.asarray(inertia, dtype=np.float64) * self.servo_omega  # critical damping (implicit)
        for i, joint_name in enumerate(self.arm_joints):
            joint = arm.joint(joint_name)
            joint.armature = self.armature
            actuator = arm.add_actuator(name=joint_name, target=joint_name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            actuator.set_to_position(kp=float(kp[i]), kv=float(kv[i]))
            actuator.ctrllimited = True
            actuator.ctrlrange = joint.range
            actuator.forcelimited = True
            if self.torque_limits is not None:
                t = float(self.torque_limits[i])
                actuator.forcerange = [-t, t]
            else:
                actuator.forcerange = motor_limit[joint_name]

        # the tool, in the tool frame on the flange (z out of the flange)
        hand = arm.body(self.flange_body)
        tool = hand.add_frame(pos=list(self.flange_pos), quat=list(self.flange_quat))
        if self.tool == "push":
            tool.add_geom(
                name="tool", type=mujoco.mjtGeom.mjGEOM_CYLINDER,
                size=[self.tool_radius, self.tool_length / 2, 0], pos=[0, 0, self.tool_length / 2],
                mass=self.tool_mass, rgba=[0.25, 0.4, 0.9, 1], contype=4, conaffinity=2,
                friction=[0.5, 0.005, 0.0001],
            )
            tool.add_site(name="tcp", pos=[0, 0, self.tool_length], size=[0.005, 0, 0])
        elif self.tool == "gripper":
            g = self.gripper
            depth = self.tcp_below_flange
            if self.gripper_standoff > 0:
                tool.add_geom(
                    name="connector", type=mujoco.mjtGeom.mjGEOM_CYLINDER,
                    size=[0.025, self.gripper_standoff / 2, 0], pos=[0, 0, self.gripper_standoff / 2],
                    mass=0.05, rgba=[0.25, 0.26, 0.3, 1], contype=0, conaffinity=0,
                )
            # the gripper's frame has z towards the palm: flipped about x relative to the tool frame
            body = tool.add_body(name="gripper", pos=[0, 0, depth], quat=[0, 1, 0, 0])
            g.add(arm, body)
            body.add_site(name="tcp", pos=[0, 0, 0], quat=[0, 1, 0, 0], size=[0.006, 0, 0], rgba=[1, 0.6, 0, 0.6])
        else:
            raise ValueError(f"{type(self).__name__}: unknown tool {self.tool!r}")
        for body in arm.bodies:
            body.gravcomp = 1.0

        yaw = float(base_yaw)
        mount = spec.worldbody.add_frame(
            pos=[float(v) for v in base_pos], quat=[np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        )
        adopt_options(arm, spec)
        spec.attach(arm, prefix=self.prefix, frame=mount)
        self._base_pos = tuple(float(v) for v in base_pos)
        c, s = math.cos(yaw), math.sin(yaw)
        ox, oy, oz = self.shoulder_offset
        self._shoulder = (self._base_pos[0] + c * ox - s * oy, self._base_pos[1] + s * ox + c * oy,
                          self._base_pos[2] + oz)

    def bind(self, model, data):
        super().bind(model, data)
        n = self.n_arm
        joint_ids = [model.joint(self.prefix + j).id for j in self.arm_joints]
        self._qadr = np.array([model.jnt_qposadr[j] for j in joint_ids])
        self._dadr = np.array([model.jnt_dofadr[j] for j in joint_ids])
        self._act = np.array([model.actuator(self.prefix + j).id for j in self.arm_joints])
        # a serial chain's dofs are consecutive: slicing is cheaper than fancy indexing
        assert np.all(np.diff(self._dadr) == 1), "arm dofs are expected to be consecutive"
        assert np.all(np.diff(self._qadr) == 1), "arm qpos are expected to be consecutive"
        assert np.all(np.diff(self._act) == 1), "arm actuators are expected to be consecutive"
        self._dofs = slice(int(self._dadr[0]), int(self._dadr[-1]) + 1)
        self._qpos = slice(int(self._qadr[0]), int(self._qadr[-1]) + 1)
        self._act_slice = slice(int(self._act[0]), int(self._act[-1]) + 1)
        if self.has_gripper:
            fingers = [model.joint(self.prefix + f) for f in self.gripper.FINGERS]
            self._finger_q = np.array([int(f.qposadr[0]) for f in fingers])
            self._finger_d = np.array([int(f.dofadr[0]) for f in fingers])
            fa = [model.actuator(self.prefix + f).id for f in self.gripper.FINGERS]
            assert fa[1] == fa[0] + 1
            self._finger_act = slice(fa[0], fa[1] + 1)
        # joint targets stay a little inside the limits so the servos never push into them
        margin = 0.01
        self._q_lo = model.jnt_range[joint_ids, 0] + margin
        self._q_hi = model.jnt_range[joint_ids, 1] - margin
        self._home_q = np.asarray(self.home_q, dtype=np.float64)
        assert self._home_q.shape == (n,), "home_q needs one value per arm joint"
        self._damping_eye = self.ik_damping**2 * np.eye(6)
        self._task_weight = np.asarray(self.ik_task_weight, dtype=np.float64)
        self._task_weight_col = self._task_weight[:, None].copy()
        self._nv = model.nv
        self._tcp_body = int(model.site_bodyid[self.tcp_site_id])
        if self.joint_inertia is None:
            self._scale_gains(model)
        self._make_work_arrays()

    def _scale_gains(self, model):
        """Servo gains from the joint-space inertia at the home posture (joint_inertia = None)."""
        d = mujoco.MjData(model)
        d.qpos[self._qpos] = self._home_q
        mujoco.mj_forward(model, d)
        M = np.zeros((model.nv, model.nv))
        mujoco.mj_fullM(model, d, M)
        inertia = np.diag(M)[self._dofs]
        for i, a in enumerate(range(self._act_slice.start, self._act_slice.stop)):
            kp = inertia[i] * self.servo_omega**2
            kv = 2.0 * inertia[i] * self.servo_omega
            model.actuator_gainprm[a, 0] = kp
            model.actuator_biasprm[a, 1] = -kp
            model.actuator_biasprm[a, 2] = -kv

    #: scratch state of the per-step IK: views into each other and into MjData,
    #: which pickling/deepcopy would turn into unrelated copies, so they are rebuilt
    _WORK_ARRAYS = (
        "_jac", "_jacp", "_jacr", "_jac_arm", "_err", "_err_pos", "_err_rot", "_err_w", "_site_quat",
        "_err_quat", "_J", "_gram", "_rhs", "_y", "_pull", "_dq", "_reachable_target",
        "_target_yaw", "_target_quat", "_views_of", "_views", "_batch_work",
    )

    def _make_work_arrays(self):
        """Preallocate the work arrays of the per-step IK (see _pose_error, _ik_step)."""
        n = self.n_arm
        self._jac = np.zeros((6, self._nv))
        self._jacp, self._jacr = self._jac[:3], self._jac[3:]  # contiguous row blocks
        self._jac_arm = self._jac[:, self._dofs]
        self._err = np.zeros(6)
        self._err_pos, self._err_rot = self._err[:3], self._err[3:]
        self._err_w = np.zeros(6)
        self._site_quat = np.zeros(4)
        self._err_quat = np.zeros(4)
        self._J = np.zeros((6, n))
        self._gram = np.zeros((6, 6))
        self._rhs = np.zeros(6)
        self._y = np.zeros(6)
        self._pull = np.zeros(n)
        self._dq = np.zeros(n)
        self._reachable_target = np.zeros(3)
        self._target_yaw = self._target_quat = None  # cached target orientation
        self._views_of = self._views = None  # cached views into MjData (see _data_views)
        self._batch_work = None  # command_batch's work arrays (see _batch_work_for)

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in self._WORK_ARRAYS:
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "_nv" in state:  # bound: rebuild the scratch arrays
            self._make_work_arrays()

    # --------------------------------------------------------------- IK core
    # These run every env step on tiny arrays, where a call's overhead is the whole
    # cost: MuJoCo's mju_* routines (about half of numpy's per-call overhead) write
    # into buffers preallocated in bind(), and the views into MjData are cached.
    def _data_views(self, data):
        """(TCP position, TCP orientation matrix, arm qpos, arm qvel, arm ctrl, finger ctrl): views into ``data``."""
        if self._views_of is not data:
            sid = self.tcp_site_id
            self._views = (
                data.site_xpos[sid], data.site_xmat[sid],
                data.qpos[self._qpos], data.qvel[self._dofs], data.ctrl[self._act_slice],
                data.ctrl[self._finger_act] if self.has_gripper else None,
            )
            self._views_of = data
        return self._views

    def _pose_error(self, data, target_pos, target_yaw):
        """6-D TCP error (position, world-frame rotation vector) at the current kinematics."""
        tcp_pos, tcp_mat = self._data_views(data)[:2]
        site_quat = self._site_quat
        mujoco.mju_sub3(self._err_pos, target_pos, tcp_pos)
        if target_yaw != self._target_yaw:  # the target orientation rarely changes: cache it
            self._target_yaw = target_yaw
            self._target_quat = _yaw_down_quat(target_yaw)
        mujoco.mju_mat2Quat(site_quat, tcp_mat)
        mujoco.mju_negQuat(site_quat, site_quat)
        # q_err = q_target * q_site^-1: the rotation taking the tool to the target, in world axes
        mujoco.mju_mulQuat(self._err_quat, self._target_quat, site_quat)
        mujoco.mju_quat2Vel(self._err_rot, self._err_quat, 1.0)
        return self._err

    def _ik_step(self, model, data, err, null_gain):
        """Damped-least-squares joint step for ``err`` plus a null-space pull towards home_q.

        dq = J^T (J J^T + l^2 I)^-1 (W err - J pull) + pull, with J the Jacobian
        with rows weighted by W: the pull's task-space part is removed, so it only
        moves the elbow. Returns a work buffer (overwritten by the next call).
        """
        J, K, pull, rhs, dq = self._J, self._gram, self._pull, self._rhs, self._dq
        mujoco.mj_jacSite(model, data, self._jacp, self._jacr, self.tcp_site_id)
        np.multiply(self._jac_arm, self._task_weight_col, out=J)
        mujoco.mju_sub(pull, self._home_q, self._data_views(data)[2])
        mujoco.mju_scl(pull, pull, null_gain)
        mujoco.mju_mulMatMatT(K, J, J)
        K += self._damping_eye
        mujoco.mju_cholFactor(K, 0.0)
        mujoco.mju_mulMatVec(rhs, J, pull)
        np.multiply(err, self._task_weight, out=self._err_w)
        mujoco.mju_sub(rhs, self._err_w, rhs)
        mujoco.mju_cholSolve(self._y, K, rhs)
        mujoco.mju_mulMatTVec(dq, J, self._y)
        mujoco.mju_addTo(dq, pull)
        return dq

    # --------------------------------------------------------------- running
    def reset(self, model, data, tcp_pos, tcp_yaw=0.0):
        target = self._within_reach(np.asarray(tcp_pos, dtype=np.float64)).copy()
        qpos = self._data_views(data)[2]
        qpos[:] = self._home_q
        for iteration in range(200):
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            err = self._pose_error(data, target, float(tcp_yaw))
            if np.abs(err).max() < 1e-7:
                break
            # the damped pseudo-inverse leaks a little of the null-space pull into the
            # task; drop the pull for the last iterations so the pose is solved exactly
            dq = self._ik_step(model, data, err, null_gain=0.05 if iteration < 30 else 0.0)
            np.clip(qpos + dq, self._q_lo, self._q_hi, out=qpos)
        data.qvel[self._dofs] = 0.0
        data.ctrl[self._act_slice] = qpos
        if self.has_gripper:
            data.qpos[self._finger_q] = self.gripper.finger_open
            data.qvel[self._finger_d] = 0.0
            data.ctrl[self._finger_act] = self.gripper.finger_open

    def _within_reach(self, target_pos):
        """``target_pos``, pulled radially towards the shoulder where the arm cannot reach it
        with the tool pointing down (scalar arithmetic: this runs every step)."""
        if self.max_shoulder_to_wrist is None:
            return target_pos
        x, y, z = target_pos[0], target_pos[1], target_pos[2]
        bx, by, bz = self._shoulder
        dx, dy = x - bx, y - by
        # wrist centre relative to the shoulder, in the vertical plane through the target
        wrist_dz = z + self.tcp_below_flange + self.wrist_to_flange_down - bz
        reach = self.max_shoulder_to_wrist
        max_wrist_radial = math.sqrt(max(reach * reach - wrist_dz * wrist_dz, 0.0))
        max_radial = max_wrist_radial + self.wrist_to_flange_ahead
        radial = math.hypot(dx, dy)
        if radial <= max_radial:
            return target_pos
        scale = max_radial / radial
        reachable = self._reachable_target
        reachable[0], reachable[1], reachable[2] = bx + dx * scale, by + dy * scale, z
        return reachable

    def command(self, model, data, target_pos, target_yaw, grip):
        # mj_step leaves the kinematics one substep behind qpos; refresh them so the
        # Jacobian, the TCP pose and the joint positions the step adds to agree
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        err = self._pose_error(data, self._within_reach(target_pos), float(target_yaw))
        dq = self._ik_step(model, data, err, self.null_gain)
        # safety net (targets are kept within reach above): a large step, near a singular
        # posture, makes the arm oscillate; cap it at about the joint speed times the
        # control period (scaled as a whole, so the step keeps its direction)
        steps = dq.tolist()  # Python's max/min on a list beat numpy's reductions on 7 numbers
        largest = max(max(steps), -min(steps))
        if largest > self.max_joint_step:
            mujoco.mju_scl(dq, dq, self.max_joint_step / largest)
        _, _, qpos, _, ctrl, finger_ctrl = self._data_views(data)
        mujoco.mju_addTo(dq, qpos)
        # clip to the joint ranges (np.clip's Python wrapper costs more than these two calls)
        np.minimum(np.maximum(dq, self._q_lo, out=dq), self._q_hi, out=ctrl)
        if finger_ctrl is not None:
            finger_ctrl[:] = self.gripper.finger_target(grip)

    def command_batch(self, robots, targets, yaws, grips, sim, rows, models=None, datas=None) -> None:
        """:meth:`command` for several arms of one model at once (the batched vector env).

        ``robots``: each env's arm (this class, bound to the same model; they keep their caches);
        ``targets`` (n, 3), ``yaws`` and ``grips`` (n,): the controllers' new targets; ``sim``: the
        vector env's simulation group (its ``batch``, bound ``ctrl``/``qpos``/``site_xpos``/``site_xmat``);
        ``rows``: the envs' rows in it. Writes the joint (and finger) targets into ``sim.ctrl[rows]``.
        ``models``/``datas``: the envs' own models and MjData, holding their rows' state: the kinematics and
        Jacobian are then computed on them per arm (MuJoCo calls, no thread-pool round trips); None: in
        the batch (``Batch.forward`` + ``Batch.jac``).

        The same IEEE operations as :meth:`command`, per element: the kinematics refresh and the
        Jacobian are MuJoCo's own (``Batch.forward`` to the position stage, whose site pose is
        ``mj_kinematics``'s, then ``Batch.jac`` at that site position: ``mj_jacSite``), elementwise
        arithmetic is vectorised, and the calls that reduce (rotation error, J J^T, the Cholesky solve,
        J^T y: MuJoCo's own dot-product order) stay MuJoCo's, per arm. Targets near or beyond the reach
        limit go through :meth:`_within_reach` itself; a non-finite joint step through command's scalar cap.
        """
        n = len(rows)
        targets = np.asarray(targets, dtype=np.float64)
        # ---- the reach limit: targets well inside the reach are returned as they are by _within_reach
        #      (a conservative test with a 1% margin); the others go through it
        goal = targets
        if self.max_shoulder_to_wrist is not None:
            bx, by, bz = self._shoulder
            reach = self.max_shoulder_to_wrist
            dx, dy = targets[:, 0] - bx, targets[:, 1] - by
            wdz = targets[:, 2] + self.tcp_below_flange + self.wrist_to_flange_down - bz
            mr = np.sqrt(np.maximum(reach * reach - wdz * wdz, 0.0)) + self.wrist_to_flange_ahead
            near = np.flatnonzero(dx * dx + dy * dy >= 0.98 * (mr * mr))
            if len(near):
                goal = targets.copy()
                for j in near.tolist():
                    goal[j] = robots[j]._within_reach(targets[j])
        w = self._batch_work_for(n)
        err, J, K, rhs, y, dq, mat = w["err"], w["J"], w["K"], w["rhs"], w["y"], w["dq"], w["mat"]
        sid = self.tcp_site_id
        if datas is None:
            # ---- command()'s mj_kinematics + mj_comPos, then mj_jacSite, in MuJoCo over the batch's rows
            ids = None if n == sim.batch.nsim else rows
            sim.batch.forward(ids=ids, stage=mujoco.mjtStage.mjSTAGE_POS)
            tcp_pos = sim.site_xpos[rows, sid]
            mat[:] = sim.site_xmat[rows, sid]
            jacp, jacr = sim.batch.jac(body=self._tcp_body, point=tcp_pos, ids=ids)
        else:
            # ---- the same on each env's own MjData (a copy of its batch row): no thread-pool dispatch
            tcp_pos, jac = w["pos"], w["jac"]
            kin, compos, jacsite = mujoco.mj_kinematics, mujoco.mj_comPos, mujoco.mj_jacSite
            for j, (r, m, d, jp, jr) in enumerate(zip(robots, models, datas, w["jacp"], w["jacr"])):
                kin(m, d)
                compos(m, d)
                jacsite(m, d, jp, jr, sid)
                views = r._data_views(d)
                tcp_pos[j] = views[0]
                mat[j] = views[1]
            jacp, jacr = jac[:, :3], jac[:, 3:]
        # ---- _pose_error: position part elementwise, rotation per arm with MuJoCo's quaternion routines;
        #      _ik_step's J J^T and J pull per arm (MuJoCo's dot products), elementwise parts over all
        np.subtract(goal, tcp_pos, out=err[:, :3])
        dofs = self._dofs
        np.multiply(jacp[:, :, dofs], self._task_weight_col[:3], out=J[:, :3])
        np.multiply(jacr[:, :, dofs], self._task_weight_col[3:], out=J[:, 3:])
        qpos = sim.qpos[rows, self._qpos]
        pull = np.subtract(self._home_q, qpos)
        pull *= self.null_gain
        site_quat, err_quat = self._site_quat, self._err_quat
        mat2quat, negquat, mulquat, quat2vel = mujoco.mju_mat2Quat, mujoco.mju_negQuat, mujoco.mju_mulQuat, \
            mujoco.mju_quat2Vel
        mulmatmatT, mulmatvec = mujoco.mju_mulMatMatT, mujoco.mju_mulMatVec
        for (r, yaw, (mat_j, err_rot_j, J_j, K_j, rhs_j, _, _), pull_j) in zip(robots, yaws.tolist(), w["views"], pull):
            if yaw != r._target_yaw:
                r._target_yaw = yaw
                r._target_quat = _yaw_down_quat(yaw)
            mat2quat(site_quat, mat_j)
            negquat(site_quat, site_quat)
            mulquat(err_quat, r._target_quat, site_quat)
            quat2vel(err_rot_j, err_quat, 1.0)
            mulmatmatT(K_j, J_j, J_j)
            mulmatvec(rhs_j, J_j, pull_j)
        K += self._damping_eye
        err *= self._task_weight
        np.subtract(err, rhs, out=rhs)
        cholfactor, cholsolve, mulmatTvec = mujoco.mju_cholFactor, mujoco.mju_cholSolve, mujoco.mju_mulMatTVec
        for (_, _, J_j, K_j, rhs_j, y_j, dq_j) in w["views"]:
            cholfactor(K_j, 0.0)
            cholsolve(y_j, K_j, rhs_j)
            mulmatTvec(dq_j, J_j, y_j)
        dq += pull
        # ---- the joint step cap (as command: largest = max(max(dq), -min(dq)), scaled as a whole)
        cap = self.max_joint_step
        finite = np.isfinite(dq).all(axis=1)
        largest = np.maximum(dq.max(axis=1), -dq.min(axis=1))
        for j in np.flatnonzero(finite & (largest > cap)).tolist():
            dq[j] *= cap / largest[j]
        for j in np.flatnonzero(~finite).tolist():  # Python's max/min on NaN: command's own arithmetic
            steps = dq[j].tolist()
            big = max(max(steps), -min(steps))
            if big > cap:
                mujoco.mju_scl(dq[j], dq[j], cap / big)
        dq += qpos
        sim.ctrl[rows, self._act_slice] = np.minimum(np.maximum(dq, self._q_lo), self._q_hi)
        if self.has_gripper:
            g = self.gripper
            for j, grip in enumerate(grips.tolist()):
                sim.ctrl[rows[j], self._finger_act] = g.finger_target(grip)

    def _batch_work_for(self, n: int) -> dict:
        """command_batch's work arrays for n arms and their per-arm views (rebuilt when n changes)."""
        w = self._batch_work
        if w is None or w["n"] != n:
            a = self.n_arm
            w = {"n": n, "err": np.zeros((n, 6)), "J": np.zeros((n, 6, a)), "K": np.zeros((n, 6, 6)),
                 "rhs": np.zeros((n, 6)), "y": np.zeros((n, 6)), "dq": np.zeros((n, a)), "mat": np.zeros((n, 9)),
                 "pos": np.zeros((n, 3)), "jac": np.zeros((n, 6, self._nv))}
            w["jacp"] = [w["jac"][j, :3] for j in range(n)]
            w["jacr"] = [w["jac"][j, 3:] for j in range(n)]
            w["views"] = [(w["mat"][j], w["err"][j, 3:], w["J"][j], w["K"][j], w["rhs"][j], w["y"][j], w["dq"][j])
                          for j in range(n)]
            self._batch_work = w
        return w

    def opening(self, data) -> float:
        """Distance between the finger pads (m); 0 without a gripper."""
        if not self.has_gripper:
            return 0.0
        return float(data.qpos[self._finger_q[0]] + data.qpos[self._finger_q[1]])

    def proprio(self, data):
        """Arm joint positions (rad), velocities (rad/s), TCP position (world, m) [, finger opening (m)]."""
        tcp_pos, _, qpos, qvel, _, _ = self._data_views(data)
        n = self.n_arm
        out = np.empty(self.proprio_dim)
        out[:n] = qpos
        out[n:2 * n] = qvel
        out[2 * n:2 * n + 3] = tcp_pos
        if self.has_gripper:
            out[2 * n + 3] = self.opening(data)
        return out

    def proprio_batch(self, qpos: np.ndarray, qvel: np.ndarray, site_xpos: np.ndarray) -> np.ndarray:
        """:meth:`proprio` of several arms from their Batch rows ((n, nq), (n, nv), (n, nsite, 3))."""
        n = self.n_arm
        out = np.empty((len(qpos), self.proprio_dim))
        out[:, :n] = qpos[:, self._qpos]
        out[:, n:2 * n] = qvel[:, self._dofs]
        out[:, 2 * n:2 * n + 3] = site_xpos[:, self.tcp_site_id]
        if self.has_gripper:  # opening(): q[f0] + q[f1]
            out[:, 2 * n + 3] = qpos[:, self._finger_q[0]] + qpos[:, self._finger_q[1]]
        return out

    @property
    def proprio_dim(self):
        return 2 * self.n_arm + 3 + (1 if self.has_gripper else 0)


__all__ = ["ArmRobot", "adopt_options", "robosuite_asset", "strip_collision_geoms", "weld_joint"]
