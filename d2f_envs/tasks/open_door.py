"""D2F-OpenDoor-v0: grasp a cabinet door's handle and swing the door open along a 3D object flow."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from ..kwargs import Number
from .articulated import ArticulatedEnv

#: geoms whose visible surfaces carry the flow's points, and the direction a camera in front looks
DOOR_FLOW_GEOMS = ("door_leaf", "door_handle")
DOOR_VIEW_DIR = (1.0, 0.0, 0.0)  # door frame: looking at the door's front (x points into the cabinet)


class OpenDoorEnv(ArticulatedEnv):
    """Swing a cabinet door open so its points follow a 3D object flow (articulated object class).

    ## Description
    A table-top cabinet (30 x 34 x 36 cm) faces the robot; its door (34 x 32
    cm, 0.9 kg) turns on a vertical hinge at its left edge (seen from the
    robot; joint ``door_hinge``, 0 - 100 degrees, damping 0.3 N m s/rad,
    friction 0.2 N m). A horizontal bar handle (2 cm thick, 12 cm long, 6 cm
    proud of the leaf) sits 25 cm from the hinge. The robot must grasp the
    handle from above and carry it on an arc around the hinge, turning the
    gripper with the door (the ``yaw`` dof). The flow's points lie on the
    door's front face and handle and are bound rigidly to the door leaf (the
    moving link). The cabinet's pose is randomised at reset; the flow is
    re-anchored rigidly to it.

    ## Robots (``robot=``)
    ``"floating_gripper"`` (default): a parallel gripper on x/y/z slides and
    a yaw hinge, see :class:`~d2f_envs.robots.floating_gripper.FloatingGripperRobot`.
    ``"panda_gripper"``: a Franka Panda arm with the same two-finger gripper
    on its flange (:class:`~d2f_envs.robots.panda.PandaGripperRobot`), base
    on the table top (mount: ``robot_mounts``).
    ``"spot_arm"``: Spot's 6-dof arm with that gripper, on a static,
    crouched Spot body (:class:`~d2f_envs.robots.spot_arm.SpotArmRobot`),
    arm base 56 cm above the table top.
    ``"gr1"``: the right arm (7 dof) of a static Fourier GR1 humanoid with that
    gripper along its forearm (:class:`~d2f_envs.robots.gr1.GR1Robot`): it
    stands in front of the cabinet, to the left of the door, pelvis 40 cm
    above the table top, bent forward at the waist, and reaches over the
    door's top edge as the door swings open.
    Arms are driven by differential IK (:class:`~d2f_envs.robots.arm.ArmRobot`),
    so the action means the same TCP motion on every robot; ``proprio``
    follows the robot (``robot.proprio_dim``: 16, 18, 16 and 18 values).

    ## Action Space
    ``Box(-1, 1, (5,), float32)``: ``(x, y, z, yaw, grip)``. TCP target
    displacement in world x, y, z scaled by 3 cm per step (0.3 m/s), yaw by
    0.25 rad per step; ``grip`` sets the fingers (-1 open ... +1 closed).

    ## Observation Space
    ``Box(-inf, inf, (16 + 76,), float64)``, layout in ``env.unwrapped.obs_layout``:

    ============== ============ ==================================================
    name           size         meaning
    ============== ============ ==================================================
    proprio        16           floating gripper: joint positions (x, y, z, yaw,
                                left/right finger) (6), their velocities (6),
                                TCP position (3), finger opening (1)
    object_points  24           8 tracked points of the door, world frame (m)
    subgoal_delta  24           flow subgoal minus current, same 8 points
    goal_delta     24           flow's last frame minus current, same 8 points
    tcp_to_object  3            centroid of the 8 points minus TCP
    phase          1            t* / (T - 1), progress along the flow
    ============== ============ ==================================================

    ## Real Observation (``obs_mode="real"``)
    The layout above with ``keypoint_visible`` (8 flags: 1 the point was seen
    in the reported measurement, 0 it holds its last seen value) after
    ``object_points``; every point entry comes from the camera tracker model
    (noise, dropouts, occlusion, latency: see :class:`~d2f_envs.base.FlowEnv`)
    and ``phase``/``subgoal_delta`` from the flow's time alignment of the
    reported points. ``proprio`` is the robot's own measurement.

    ## Rewards
    :class:`~d2f_envs.reward.FlowTrackingReward`, the sum of the terms in
    ``info``: ``reward_tracking`` = exp(-tracking_error / sigma),
    ``reward_progress`` (flow frames advanced / (T - 1), x10),
    ``reward_action`` (-0.05 mean(a^2)) and ``reward_success`` (2 per step
    while successful). Weights are set with ``reward_scales={...}``.

    ## Success (``info["is_success"]``)
    ``info["door_angle"]`` (degrees, 0 closed) >= ``angle_threshold``
    (default 60 degrees; the shipped flow opens the door 90 degrees) AND
    ``final_error`` < ``success_threshold``: by default derived from the
    angle criterion, the flow's final error with the door at exactly
    ``angle_threshold`` (+1 mm), about 7 cm for the default flow (its points
    are on the leaf's front face; 9 cm for the simulated demonstration's,
    over the whole leaf), so the two tests agree.

    ## Episode End
    No termination; truncation after 120 steps (12 s: approach, grasp and the
    shipped flow's 5 s) by the registered ``TimeLimit``, or at once when the
    physics diverges (``info["truncation_reason"]``).

    ## Arguments
    ================== ============ ====================================================
    argument           default      meaning
    ================== ============ ====================================================
    flow               shipped      ``ObjectFlow``, path to a ``.npz`` flow, or None
    robot              "floating_   ``"floating_gripper"``, ``"panda_gripper"``,
                       gripper"     ``"spot_arm"``, ``"gr1"``
    render_mode        None         ``"rgb_array"`` draws the flow's subgoal (green) and
                                    final (red) points over the scene
    alignment          "nearest"    time alignment: ``"nearest"`` or ``"clock"``
    lookahead          0.3          subgoal lead in seconds (nearest alignment)
    max_lag            1.5          subgoal deadline: at most this many seconds behind
                                    the clock (None: the paper's rule exactly)
    reward_scales      None         dict overriding ``RewardScales`` fields
    reward_sigma       0.03         tracking term length scale (m)
    success_threshold  None         final error for success (m); None: derived from
                                    ``angle_threshold`` (see Success)
    angle_threshold    60.0         door opening (degrees) for success
    reset_noise_scale  1.0          x (+-2 cm, +-0.1 rad cabinet; +-3 cm TCP) start noise
    width, height      320, 240     render size in pixels
    obs_mode           "state"      ``"real"``: only what a robot can measure; the object's
                                    points come from a camera tracker model (see
                                    "Real Observation")
    real_obs           None         tracker settings over ``sim2real.REAL_OBS_DEFAULTS``
                                    (noise_std 0.003 m, dropout 0.02, occlusion True,
                                    latency 2 steps, camera "overview"); obs_mode="real"
    randomize          None         per-episode domain randomisation ``{key: (low,
                                    high)}``: friction, mass, damping, kp (factors),
                                    action_latency (steps), camera_translation (m),
                                    camera_rotation (rad); see ``d2f_envs.sim2real``.
                                    Not size: the door is fitted to its cabinet
    ================== ============ ====================================================
    """

    env_id = "D2F-OpenDoor-v0"
    asset = "open_door.xml"
    link_body = "door"
    link_joint = "door_hinge"
    handle_site = "door_handle"
    robots = ("floating_gripper", "panda_gripper", "spot_arm", "gr1")
    #: (x, y, z, yaw) of each robot's base: where the handle's whole path is reachable with the
    #: tool pointing down, away from singular postures (GR1: its pelvis; the door's free edge
    #: passes 4 cm in front of its thighs, its forearm clears the door's top edge by ~6 mm)
    robot_mounts = {
        "floating_gripper": (0.0, 0.0, 0.0, 0.0),
        "panda_gripper": (-0.5, 0.05, 0.0, 0.0),
        "spot_arm": (-0.45, -0.05, 0.56, 0.0),
        "gr1": (-0.25, 0.33, 0.4, 0.0),
    }
    dofs = ("x", "y", "z", "yaw", "grip")
    workspace = ((-0.3, -0.3, 0.03), (0.4, 0.4, 0.5))
    tcp_home = (-0.02, 0.0, 0.32)

    # 100 degrees: the hinge's range
    kwarg_spec = {"angle_threshold": Number(lo=0.0, hi=100.0, lo_open=True, unit="of degrees")}
    object_words = ("door",)

    def __init__(self, angle_threshold: float = 60.0, **kwargs: Any):
        self.angle_threshold = float(angle_threshold)
        super().__init__(**kwargs)

    def _joint_threshold(self) -> float:
        return float(np.deg2rad(self.angle_threshold))

    def door_angle(self) -> float:
        """Door opening in degrees (0 closed)."""
        return float(np.rad2deg(self.joint_value()))

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        info["door_angle"] = self.door_angle()
        return obs, info

    def _task_success(self, points: np.ndarray) -> Tuple[bool, Dict[str, Any]]:
        angle = self.door_angle()
        return angle >= self.angle_threshold, {"door_angle": angle}
