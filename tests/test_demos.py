"""The shipped flows (flows/data/<task>/): the simulated demonstrations' flows are exactly what their
scripted demonstrations produce (reproducible data), and each env's default is one of the shipped flows.
That the extracted flows are what the extraction pipeline makes of the rendered demonstrations is
tests/test_render_demo.py's."""
import numpy as np
import pytest

import d2f_envs  # noqa: F401
from d2f_envs.demos import DEMOS
from flows import shipped_flow, shipped_flow_path
from flows.shipped import DEFAULT, FILES, SHIPPED, TASK_DIRS


@pytest.mark.parametrize("env_id", sorted(DEMOS))
def test_shipped_demo_flow_is_reproduced_by_its_demo(env_id):
    made, shipped = DEMOS[env_id](), shipped_flow(env_id, "demo")
    np.testing.assert_array_equal(made.points, shipped.points)
    np.testing.assert_array_equal(made.visible, shipped.visible)
    assert made.meta() == shipped.meta()
    assert shipped.source["kind"] == "simulated demonstration" and shipped.task == env_id


def test_every_registered_env_has_a_demo_and_its_shipped_flows():
    assert set(DEMOS) == set(d2f_envs.ENV_IDS) == set(TASK_DIRS) == set(DEFAULT)
    for env_id in d2f_envs.ENV_IDS:
        for which in FILES:
            assert shipped_flow_path(env_id, which).is_file(), (env_id, which)


@pytest.mark.parametrize("env_id", sorted(DEMOS))
def test_the_default_flow_is_the_one_DEFAULT_names(env_id):
    which = DEFAULT[env_id]
    assert which in ("demo", "extracted")
    path = shipped_flow_path(env_id)
    assert path == shipped_flow_path(env_id, which) == path.parents[1] / SHIPPED[env_id]
    flow = shipped_flow(env_id)
    assert flow.task == env_id
    assert flow.source["kind"] == {"demo": "simulated demonstration", "extracted": "video"}[which]


def test_unknown_shipped_flow_names_the_choices():
    with pytest.raises(KeyError, match="no shipped flow 'flow'; use 'default' or one of"):
        shipped_flow_path("D2F-PushT-v0", "flow")
    with pytest.raises(KeyError, match="no shipped flow for 'D2F-Nope-v0'"):
        shipped_flow_path("D2F-Nope-v0")
