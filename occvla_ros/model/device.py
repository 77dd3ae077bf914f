"""Which torch device runs the model: one validation for the planner node and the commands.

``auto`` picks the first CUDA device when one is present, else the CPU; an explicit ``cpu``,
``cuda`` or ``cuda:N`` is honoured, with a :class:`ConfigError` naming the value when it is not a
torch device, not a supported kind, or a CUDA device this machine (or torch build) does not have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from occvla_ros.errors import ConfigError

if TYPE_CHECKING:
    import torch

AUTO = "auto"
DEVICE_HELP = "auto (CUDA if present, else CPU), cpu, cuda or cuda:N"


def resolve_device(device: str) -> torch.device:
    """The torch device ``device`` names (see the module docstring)."""
    import torch  # here: commands import this module for DEVICE_HELP before any work starts

    if device == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"invalid device {device!r}: expected {DEVICE_HELP}") from error
    if chosen.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {device!r}: expected {DEVICE_HELP}")
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (chosen.index or 0) >= count:
            raise ConfigError(f"device {device!r} requested but {count} CUDA device(s) exist")
    return chosen
