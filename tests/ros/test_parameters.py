"""config/planner.yaml lists the node's declared parameters with the same defaults."""

from __future__ import annotations

import pytest
import yaml

from occvla_ros.ros.parameters import PLANNER_PARAMETERS, validate_planner_parameter
from tests.support.ros import REPO_ROOT


def test_planner_yaml_matches_the_declared_defaults():
    values = yaml.safe_load((REPO_ROOT / "config" / "planner.yaml").read_text())
    values = values["/**"]["ros__parameters"]
    assert values == {name: spec[0] for name, spec in PLANNER_PARAMETERS.items()}
    assert all(validate_planner_parameter(n, v) is None for n, v in values.items())


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("sync_slop_s", -0.1, "must be >= 0"),
        ("camera_timeout_s", 0.0, "must be > 0"),
        ("missing_camera_policy", "guess", "must be one of"),
        ("sync_slop_s", 1, "must be a float"),
        ("odometry_topic", " ", "must not be empty"),
        ("base_frame", "", "must not be empty"),
        ("sync_slop_s", float("inf"), "must be a finite number"),
        ("loop_reset_s", float("nan"), "must be a finite number"),
        ("cpu_threads", -1, "must be >= 0"),
        ("cpu_threads", 2.0, "must be a int"),
        ("heap_reserve_mib", -1, "must be >= 0 and < 64"),
        ("heap_reserve_mib", 64, "must be >= 0 and < 64"),
    ],
)
def test_invalid_values_are_named(name, value, message):
    problem = validate_planner_parameter(name, value)
    assert problem is not None and message in problem and name in problem


def test_docs_table_lists_every_parameter():
    documented = {
        line.split("|")[1].strip().strip("`")
        for line in (REPO_ROOT / "docs" / "ros.md").read_text().splitlines()
        if line.startswith("| `")
    }
    declared = {
        ".".join("<CAM>" if part.startswith("CAM_") else part for part in name.split("."))
        for name in PLANNER_PARAMETERS
    }
    assert declared <= documented, declared - documented
