"""A Franka Panda arm with a cylindrical push tool, driven by differential IK.

The arm's MJCF and meshes are robosuite's (used as data only: robosuite is not
imported). The model is adapted with the ``MjSpec`` API before it is attached:

* robosuite's torque motors -> joint position servos (critically damped,
  gains scaled by each joint's inertia) with gravity compensation on every
  link, so a pose is held without an integral term;
* collision meshes removed (only the push tool touches anything), visual
  meshes kept for rendering;
* a vertical push tool (cylinder) on the flange, with the ``panda/tcp`` site
  at the centre of its tip.

Each control step :meth:`PandaRobot.command` runs one damped-least-squares IK
step on the 6-D TCP error (tool straight down, yaw = ``target_yaw``) with a
null-space pull towards an elbow-up home posture, and writes the resulting
joint targets to ``data.ctrl``.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import mujoco
import numpy as np

from .base import RobotAdapter

#: robosuite's Panda model, relative to the robosuite package folder
PANDA_XML = "models/assets/robots/panda/robot.xml"

JOINTS = tuple(f"joint{i}" for i in range(1, 8))

# Elbow-up posture with the flange pointing straight down, the TCP 0.5 m in
# front of the base and 12 cm up (q6 = q2 - q4 keeps the flange vertical;
# q7 = pi/4 aligns robosuite's hand frame with the base's x axis). IK starts here at reset and
# the null-space term pulls towards it while pushing.
HOME_Q = np.array([0.0, 0.15, 0.0, -2.35, 0.0, 2.5, np.pi / 4])

# Diagonal of the joint-space inertia matrix (kg m^2, robosuite's inflated link
# inertias plus ARMATURE) in a typical pushing posture. Servo gains are scaled
# by it so that every joint has the same closed-loop bandwidth.
JOINT_INERTIA = np.array([2.25, 2.25, 1.55, 1.3, 0.45, 0.27, 0.15])
# rotor inertia added to each joint: realistic for the Panda's geared motors and
# it keeps the light wrist joints from being the stiffest mode of the system
ARMATURE = 0.05


# Panda geometry (m) for the reach limit: shoulder (joint 2) height above the
# base, the flange's offset ahead of the wrist centre (joint 6 axis) and below it
SHOULDER_HEIGHT = 0.333
WRIST_TO_FLANGE_AHEAD = 0.088
WRIST_TO_FLANGE_DOWN = 0.107
# largest shoulder-to-wrist distance the IK is asked for: the arm's full stretch is
# ~0.71 m (joint 4 stops at -0.07 rad); near it the arm is singular and chasing an
# out-of-reach target makes it oscillate
MAX_SHOULDER_TO_WRIST = 0.70


def panda_xml_path() -> Path:
    """Path of robosuite's Panda MJCF, found without importing robosuite."""
    spec = importlib.util.find_spec("robosuite")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ImportError(
            "robot='panda' uses the Franka Panda model shipped with robosuite, which is not installed; "
            "install it with `pip install robosuite` (only its MJCF/mesh files are used) or use robot='pusher'"
        )
    path = Path(locations[0]) / PANDA_XML
    if not path.is_file():
        raise ImportError(f"robosuite is installed but has no Panda model at {path}; robosuite >= 1.5 is needed")
    return path


def _yaw_down_quat(yaw: float) -> np.ndarray:
    """Orientation (w, x, y, z) of a frame whose z axis points straight down and x axis has heading ``yaw``."""
    c, s = np.cos(yaw / 2), np.sin(yaw / 2)
    # Rz(yaw) * Rx(pi) = (c, 0, 0, s) * (0, 1, 0, 0)
    return np.array([0.0, c, s, 0.0])


class PandaRobot(RobotAdapter):
    """Franka Panda (7 dof) with a 1.5 cm radius push tool; no gripper.

    ``proprio``: 7 joint positions (rad), 7 joint velocities (rad/s), TCP
    position (world, m): 17 values.
    """

    name = "panda"
    can_yaw = True
    tool_radius = 0.015
    #: flange-to-tip length (m): keeps the flange 15 cm above the TCP, so the
    #: wrist clears the table (the reach, ~0.79 m from the base at table
    #: height, hardly depends on it between 10 and 30 cm)
    tool_length = 0.15
    tool_mass = 0.1
    #: closed-loop natural frequency of the joint servos (rad/s): settles a
    #: 3 cm step to a few mm within one 0.1 s control period
    servo_omega = 40.0
    #: DLS damping (m, rad): keeps joint steps bounded near singularities
    ik_damping = 0.02
    #: IK weights of the (x, y, z, rx, ry, rz) errors: where the target is out of
    #: reach the damped step gives up the least-weighted directions first, so the
    #: tool keeps its height and stays vertical and only lags in x/y
    ik_task_weight = (1.0, 1.0, 10.0, 2.0, 2.0, 2.0)
    #: largest joint target change per command (rad): 2 rad/s at 10 Hz, about the
    #: Panda's joint speed limits
    max_joint_step = 0.2
    #: null-space gain towards HOME_Q per control step (fraction of the gap)
    null_gain = 0.1

    # --------------------------------------------------------------- building
    def attach(self, spec, base_pos, base_yaw, tcp_height):
        arm = mujoco.MjSpec.from_file(str(panda_xml_path()))

        # the robot only pushes: drop robosuite's collision meshes (group 0) and
        # their assets, which also saves compiling them; visual meshes stay
        collision_meshes = set()
        for geom in list(arm.geoms):
            if geom.contype or geom.conaffinity:
                collision_meshes.add(geom.meshname)
                arm.delete(geom)
        for mesh in list(arm.meshes):
            if mesh.name in collision_meshes:
                arm.delete(mesh)

        # torque motors -> position servos that keep the motors' torque limits;
        # gravity compensation on every link
        torque_limit = {}
        for actuator in list(arm.actuators):
            torque_limit[actuator.target] = actuator.ctrlrange.copy()
            arm.delete(actuator)
        for body in arm.bodies:
            body.gravcomp = 1.0
        kp = JOINT_INERTIA * self.servo_omega**2
        kv = 2.0 * JOINT_INERTIA * self.servo_omega  # critical damping (integrated implicitly)
        for i, joint_name in enumerate(JOINTS):
            joint = arm.joint(joint_name)
            joint.armature = ARMATURE
            actuator = arm.add_actuator(name=joint_name, target=joint_name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            actuator.set_to_position(kp=float(kp[i]), kv=float(kv[i]))
            actuator.ctrllimited = True
            actuator.ctrlrange = joint.range
            actuator.forcelimited = True
            actuator.forcerange = torque_limit[joint_name]

        # push tool on the flange (robosuite's "right_hand" body, z out of the flange)
        hand = arm.body("right_hand")
        hand.add_geom(
            name="tool", type=mujoco.mjtGeom.mjGEOM_CYLINDER,
            size=[self.tool_radius, self.tool_length / 2, 0], pos=[0, 0, self.tool_length / 2],
            mass=self.tool_mass, rgba=[0.25, 0.4, 0.9, 1], contype=4, conaffinity=2,
            friction=[0.5, 0.005, 0.0001],
        )
        hand.add_site(name="tcp", pos=[0, 0, self.tool_length], size=[0.005, 0, 0])

        yaw = float(base_yaw)
        mount = spec.worldbody.add_frame(
            pos=[float(v) for v in base_pos], quat=[np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        )
        spec.attach(arm, prefix=self.prefix, frame=mount)
        self._base_pos = tuple(float(v) for v in base_pos)

    def bind(self, model, data):
        super().bind(model, data)
        joint_ids = [model.joint(self.prefix + j).id for j in JOINTS]
        self._qadr = np.array([model.jnt_qposadr[j] for j in joint_ids])
        self._dadr = np.array([model.jnt_dofadr[j] for j in joint_ids])
        self._act = np.array([model.actuator(self.prefix + j).id for j in JOINTS])
        # a serial chain's dofs are consecutive: slicing is cheaper than fancy indexing
        assert np.all(np.diff(self._dadr) == 1), "Panda dofs are expected to be consecutive"
        self._dofs = slice(int(self._dadr[0]), int(self._dadr[-1]) + 1)
        self._qpos = slice(int(self._qadr[0]), int(self._qadr[-1]) + 1)
        self._act_slice = slice(int(self._act[0]), int(self._act[-1]) + 1)
        assert np.all(np.diff(self._act) == 1), "Panda actuators are expected to be consecutive"
        # joint targets stay a little inside the limits so the servos never push into them
        margin = 0.01
        self._q_lo = model.jnt_range[joint_ids, 0] + margin
        self._q_hi = model.jnt_range[joint_ids, 1] - margin
        self._damping_eye = self.ik_damping**2 * np.eye(6)
        self._task_weight = np.asarray(self.ik_task_weight, dtype=np.float64)
        self._task_weight_col = self._task_weight[:, None].copy()
        self._nv = model.nv
        self._make_work_arrays()

    #: scratch state of the per-step IK: views into each other and into MjData,
    #: which pickling/deepcopy would turn into unrelated copies, so they are rebuilt
    _WORK_ARRAYS = (
        "_jac", "_jacp", "_jacr", "_jac_arm", "_err", "_err_pos", "_err_rot", "_err_w", "_site_quat",
        "_err_quat", "_J", "_gram", "_rhs", "_y", "_pull", "_dq", "_reachable_target",
        "_target_yaw", "_target_quat", "_views_of", "_views",
    )

    def _make_work_arrays(self):
        """Preallocate the work arrays of the per-step IK (see _pose_error, _ik_step)."""
        n = len(JOINTS)
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
        """(TCP position, TCP orientation matrix, arm qpos, arm qvel, arm ctrl): views into ``data``'s memory."""
        if self._views_of is not data:
            sid = self.tcp_site_id
            self._views = (
                data.site_xpos[sid], data.site_xmat[sid],
                data.qpos[self._qpos], data.qvel[self._dofs], data.ctrl[self._act_slice],
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
        """Damped-least-squares joint step for ``err`` plus a null-space pull towards HOME_Q.

        dq = J^T (J J^T + l^2 I)^-1 (W err - J pull) + pull, with J the Jacobian
        with rows weighted by W: the pull's task-space part is removed, so it only
        moves the elbow. Returns a work buffer (overwritten by the next call).
        """
        J, K, pull, rhs, dq = self._J, self._gram, self._pull, self._rhs, self._dq
        mujoco.mj_jacSite(model, data, self._jacp, self._jacr, self.tcp_site_id)
        np.multiply(self._jac_arm, self._task_weight_col, out=J)
        mujoco.mju_sub(pull, HOME_Q, self._data_views(data)[2])
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
        qpos[:] = HOME_Q
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

    def _within_reach(self, target_pos):
        """``target_pos``, pulled radially towards the base where the arm cannot reach it
        with the tool pointing down (scalar arithmetic: this runs every step)."""
        x, y, z = target_pos[0], target_pos[1], target_pos[2]
        bx, by, bz = self._base_pos
        dx, dy = x - bx, y - by
        # wrist centre relative to the shoulder, in the vertical plane through the target
        wrist_dz = z + self.tool_length + WRIST_TO_FLANGE_DOWN - (bz + SHOULDER_HEIGHT)
        max_wrist_radial = math.sqrt(max(MAX_SHOULDER_TO_WRIST**2 - wrist_dz * wrist_dz, 0.0))
        max_radial = max_wrist_radial + WRIST_TO_FLANGE_AHEAD
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
        # posture, makes the arm oscillate; cap it at about the Panda's joint speed times
        # the control period (scaled as a whole, so the step keeps its direction)
        steps = dq.tolist()  # Python's max/min on a list beat numpy's reductions on 7 numbers
        largest = max(max(steps), -min(steps))
        if largest > self.max_joint_step:
            mujoco.mju_scl(dq, dq, self.max_joint_step / largest)
        _, _, qpos, _, ctrl = self._data_views(data)
        mujoco.mju_addTo(dq, qpos)
        # clip to the joint ranges (np.clip's Python wrapper costs more than these two calls)
        np.minimum(np.maximum(dq, self._q_lo, out=dq), self._q_hi, out=ctrl)

    def proprio(self, data):
        """7 joint positions (rad), 7 joint velocities (rad/s), TCP position (world, m)."""
        tcp_pos, _, qpos, qvel, _ = self._data_views(data)
        out = np.empty(17)
        out[:7] = qpos
        out[7:14] = qvel
        out[14:] = tcp_pos
        return out

    @property
    def proprio_dim(self):
        return 17
