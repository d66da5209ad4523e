"""The shipped flows are exactly what their scripted demonstrations produce (reproducible data)."""
import numpy as np
import pytest

import d2f_envs  # noqa: F401
from d2f_envs.demos import DEMOS
from flows import shipped_flow


@pytest.mark.parametrize("env_id", sorted(DEMOS))
def test_shipped_flow_is_reproduced_by_its_demo(env_id):
    made, shipped = DEMOS[env_id](), shipped_flow(env_id)
    np.testing.assert_array_equal(made.points, shipped.points)
    np.testing.assert_array_equal(made.visible, shipped.visible)
    assert made.meta() == shipped.meta()
    assert shipped.source["kind"] == "simulated demonstration" and shipped.task == env_id


def test_every_registered_env_has_a_shipped_flow_and_a_demo():
    assert set(DEMOS) == set(d2f_envs.ENV_IDS)
