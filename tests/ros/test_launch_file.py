"""launch/planner.launch.py and `occvla launch` start the same node set.

`launch` and `launch_ros` cannot be installed here (see docs/ros.md), so this test registers
minimal stand-ins for the handful of classes the launch file uses, ONLY in sys.modules for the
duration of the test (a test double for packages that do not exist here), executes the real
launch file, and compares the Node(...) calls it makes with the launcher's command lines.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from occvla_ros.ros.launcher import node_command, parse_launch_arguments
from occvla_ros.ros.node_set import dds_environment, plan_nodes
from tests.support.ros import REPO_ROOT


class _Recorded:
    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context) -> str:
        return context[self.name]


@pytest.fixture
def launch_doubles(monkeypatch):
    modules = {
        "launch": {"LaunchDescription": list},
        "launch.actions": {
            "DeclareLaunchArgument": _Recorded,
            "OpaqueFunction": _Recorded,
            "SetEnvironmentVariable": _Recorded,
            "Shutdown": _Recorded,
        },
        "launch.substitutions": {"LaunchConfiguration": _LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": _Recorded},
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)


def load_launch_file():
    spec = importlib.util.spec_from_file_location(
        "planner_launch", REPO_ROOT / "launch" / "planner.launch.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "tokens", [[], ["checkpoint:=/ckpt", "occupancy:=true", "device:=cuda:1", "use_sim_time:=true"]]
)
def test_launch_file_and_launcher_start_the_same_nodes(launch_doubles, installed_share_dir, tokens):
    entities = load_launch_file().generate_launch_description()
    declared = {
        e.args[0]: e.kwargs["default_value"] for e in entities if "default_value" in e.kwargs
    }
    environment = {e.args[0]: e.args[1] for e in entities if len(e.args) == 2}
    [opaque] = [e for e in entities if "function" in e.kwargs]
    context = {**declared, **parse_launch_arguments(tokens)}
    launched = opaque.kwargs["function"](context)

    planned = plan_nodes(installed_share_dir, parse_launch_arguments(tokens))
    assert environment == dds_environment(installed_share_dir)
    assert len(launched) == len(planned) == (2 if "occupancy:=true" in tokens else 1)
    for node, plan in zip(launched, planned, strict=True):
        files, overrides = node.kwargs["parameters"][:-1], node.kwargs["parameters"][-1]
        command = node_command(plan)
        assert node.kwargs["name"] == plan.spec.name
        assert node.kwargs["executable"] == plan.spec.executable
        # Like the launcher: one node's exit ends the launch.
        assert type(node.kwargs["on_exit"]).__name__ == "_Recorded"
        assert node.kwargs["on_exit"].kwargs["reason"] == f"{plan.spec.name} exited"
        assert all(["--params-file", f] == command[i : i + 2] for f in files
                   for i in [command.index(f) - 1])  # fmt: skip
        for key, value in overrides.items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            assert f"{key}:={text}" in command
        for source, target in node.kwargs["remappings"]:
            assert f"{source}:={target}" in command
    if tokens:
        assert planned[0].parameters["device"] == "cuda:1"
        assert planned[0].parameters["use_sim_time"] is True


def test_console_scripts_exist_for_the_declared_executables():
    from occvla_ros.ros import node_set

    setup_text = (REPO_ROOT / "setup.py").read_text()
    for spec in (node_set.PLANNER, node_set.OCCUPANCY):
        assert f"{spec.executable} = {spec.module}:main" in setup_text
        assert importlib.util.find_spec(spec.module) is not None


def test_bad_launch_arguments_are_named():
    from occvla_ros.errors import ConfigError

    with pytest.raises(ConfigError, match="'checkpoint=/x'"):
        parse_launch_arguments(["checkpoint=/x"])
    with pytest.raises(ConfigError, match="'speed:=3'"):
        parse_launch_arguments(["speed:=3"])
