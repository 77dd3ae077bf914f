"""Device selection shared by the planner node and `occvla evaluate`."""

from __future__ import annotations

import pytest
import torch

from occvla_ros.errors import ConfigError
from occvla_ros.model.device import resolve_device


def test_auto_and_cpu_resolve_to_a_device_this_machine_has():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu", "invalid device 'tpu'"),
        ("meta", "unsupported device 'meta'"),
        ("cuda:99", "cuda:99"),
    ],
)
def test_devices_torch_cannot_run_the_model_on_are_clear_errors(device, message):
    with pytest.raises(ConfigError, match=message):
        resolve_device(device)
