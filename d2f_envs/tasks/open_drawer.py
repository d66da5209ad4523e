"""D2F-OpenDrawer-v0: grasp a drawer's handle and pull the drawer open along a 3D object flow."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from ..kwargs import Number
from .articulated import ArticulatedEnv

#: geoms whose visible surfaces carry the flow's points, and the direction a camera in front looks
DRAWER_FLOW_GEOMS = ("drawer_front", "drawer_handle")
DRAWER_VIEW_DIR = (1.0, 0.0, 0.0)  # drawer frame: looking at the front (x points into the cabinet)


class OpenDrawerEnv(ArticulatedEnv):
    """Open a drawer so its points follow a 3D object flow (articulated object class).

    ## Description
    A table-top cabinet (35 x 40 x 25 cm) faces the robot; its drawer (1.3 kg,
    slide joint ``drawer_slide``, travel 0 - 20 cm, damping 5 N s/m,
    friction 2 N) has a horizontal bar handle (2 cm thick, 14 cm long, 6 cm
    proud of the front). The robot must grasp the handle from above and pull.
    The flow's points lie on the drawer's front face and handle and are bound
    rigidly to the drawer (the moving link). The cabinet's pose is randomised
    at reset; the flow is re-anchored rigidly to it, so it always describes
    the same opening motion.

    ## Robots (``robot=``)
    ``"floating_gripper"`` (default): a parallel gripper on x/y/z slides and
    a yaw hinge, see :class:`~d2f_envs.robots.floating_gripper.FloatingGripperRobot`.
    ``"panda_gripper"``: a Franka Panda arm with the same two-finger gripper
    on its flange (:class:`~d2f_envs.robots.panda.PandaGripperRobot`), base
    on the table top (mount: ``robot_mounts``).
    ``"spot_arm"``: Spot's 6-dof arm with that gripper, on a static,
    crouched Spot body (:class:`~d2f_envs.robots.spot_arm.SpotArmRobot`),
    arm base 56 cm above the table top.
    Arms are driven by differential IK (:class:`~d2f_envs.robots.arm.ArmRobot`),
    so the action means the same TCP motion on every robot; ``proprio``
    follows the robot (``robot.proprio_dim``: 16, 18 and 16 values).

    ## Action Space
    ``Box(-1, 1, (4,), float32)``: ``(x, y, z, grip)``. TCP target
    displacement in world x, y, z scaled by 3 cm per step (0.3 m/s); ``grip``
    sets the fingers (-1 open ... +1 closed). The TCP keeps its start yaw.

    ## Observation Space
    ``Box(-inf, inf, (16 + 76,), float64)``, layout in ``env.unwrapped.obs_layout``:

    ============== ============ ==================================================
    name           size         meaning
    ============== ============ ==================================================
    proprio        16           floating gripper: joint positions (x, y, z, yaw,
                                left/right finger) (6), their velocities (6),
                                TCP position (3), finger opening (1)
    object_points  24           8 tracked points of the drawer, world frame (m)
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
    ``info["extension"]`` >= ``open_fraction`` (default 0.9): the drawer is
    pulled out at least 90 % of its slide range (the Dream2Flow criterion);
    ``extension`` is the slide position over its range, in [0, 1]. AND
    ``final_error`` < ``success_threshold``: by default derived from the
    criterion, the flow's final error with the drawer at exactly
    ``open_fraction`` (+1 mm): 2.2 cm for the default flow (2.1 cm for the
    simulated demonstration's), which opens the drawer fully (20 cm), so the
    two tests agree.

    ## Episode End
    No termination; truncation after 100 steps (10 s: approach, grasp and the
    shipped flow's 4 s) by the registered ``TimeLimit``, or at once when the
    physics diverges (``info["truncation_reason"]``).

    ## Arguments
    ================== ============ ====================================================
    argument           default      meaning
    ================== ============ ====================================================
    flow               shipped      ``ObjectFlow``, path to a ``.npz`` flow, or None
    robot              "floating_   ``"floating_gripper"``, ``"panda_gripper"``,
                       gripper"     ``"spot_arm"``
    render_mode        None         ``"rgb_array"`` draws the flow's subgoal (green) and
                                    final (red) points over the scene
    alignment          "nearest"    time alignment: ``"nearest"`` or ``"clock"``
    lookahead          0.3          subgoal lead in seconds (nearest alignment)
    max_lag            1.5          subgoal deadline: at most this many seconds behind
                                    the clock (None: the paper's rule exactly)
    reward_scales      None         dict overriding ``RewardScales`` fields
    reward_sigma       0.03         tracking term length scale (m)
    success_threshold  None         final error for success (m); None: derived from
                                    ``open_fraction`` (see Success)
    open_fraction      0.9          drawer extension (fraction of the range) for success
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
                                    Not size: the drawer is fitted to its cabinet
    ================== ============ ====================================================
    """

    env_id = "D2F-OpenDrawer-v0"
    asset = "open_drawer.xml"
    link_body = "drawer"
    link_joint = "drawer_slide"
    handle_site = "drawer_handle"
    robots = ("floating_gripper", "panda_gripper", "spot_arm")
    #: (x, y, z, yaw) of each robot's base: where the handle's whole path is reachable with the
    #: tool pointing down, away from singular postures
    robot_mounts = {
        "floating_gripper": (0.0, 0.0, 0.0, 0.0),
        "panda_gripper": (-0.5, 0.05, 0.0, 0.0),
        "spot_arm": (-0.45, -0.05, 0.56, 0.0),
    }
    dofs = ("x", "y", "z", "grip")
    workspace = ((-0.25, -0.3, 0.03), (0.4, 0.3, 0.45))
    tcp_home = (-0.02, 0.0, 0.28)

    kwarg_spec = {"open_fraction": Number(lo=0.0, hi=1.0, lo_open=True, unit="(fraction of the slide's range)")}
    object_words = ("drawer",)

    def __init__(self, open_fraction: float = 0.9, **kwargs: Any):
        self.open_fraction = float(open_fraction)
        super().__init__(**kwargs)

    def _joint_threshold(self) -> float:
        lo, hi = self.model.joint(self.link_joint).range
        return float(lo + self.open_fraction * (hi - lo))

    def extension(self) -> float:
        """Drawer slide position as a fraction of its range (0 closed, 1 fully open)."""
        lo, hi = self.joint_range
        return (self.joint_value() - lo) / (hi - lo)

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        info["extension"] = self.extension()
        return obs, info

    def _task_success(self, points: np.ndarray) -> Tuple[bool, Dict[str, Any]]:
        ext = self.extension()
        return ext >= self.open_fraction, {"extension": ext}
