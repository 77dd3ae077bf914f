"""Per-keyframe facts of the synthetic world that no nuScenes table holds, in a sidecar folder.

``DATAROOT/world/<scene name>.json`` (written by ``occvla synth``) maps each sample token to:

- ``command``: the high-level driving command from the ROUTE ("turn left" / "turn right" /
  "go straight"), known before the turn, as nuScenes planners (ST-P3, UniAD, VAD) take it: the
  next intersection's turn from ``COMMAND_DISTANCE_M`` before its stop line until its exit;
- ``situation``: what decides the keyframe's 3 s future, one of :data:`SITUATIONS` (for
  per-situation breakdowns);
- ``state``: the privileged world state a perfect perception would read (:data:`STATE_FEATURES`),
  the input of the oracle baseline.

Real nuScenes has no such folder: the loader then keeps the future-derived command and an empty
situation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from occvla_ros.errors import DataError

WORLD_DIR = "world"
CRUISE, STOP, LEAD_BRAKING, OBSTACLE_LANE_CHANGE, TURN = (
    "cruise",
    "stop",
    "lead_braking",
    "obstacle_lane_change",
    "turn",
)
SITUATIONS: tuple[str, ...] = (CRUISE, STOP, LEAD_BRAKING, OBSTACLE_LANE_CHANGE, TURN)
# What the oracle reads (units: m, s, m/s, rad; distances beyond FAR_M, or to nothing, read FAR_M;
# waits are capped at MAX_WAIT_S).
STATE_FEATURES: tuple[str, ...] = (
    "lane_offset",  # ego's lateral offset from the route centre line (lanes at -1.75, -5.25)
    "lane_shift_needed",  # to the lane the route or an obstacle ahead demands next (+ left)
    "heading_change_10",  # route heading 10 / 20 / 30 / 40 m ahead minus here (curves, turns)
    "heading_change_20",
    "heading_change_30",
    "heading_change_40",
    "stop_distance",  # ego front to the next place it must stop (red light, stop sign, yield)
    "stop_wait",  # how long it will have to wait there
    "stop_is_red_light",
    "stop_is_stop_sign",
    "lead_gap",  # ego front to the lead vehicle's tail
    "lead_speed",
    "lead_accel",
    "lead_braking",
    "obstacle_distance",  # ego front to an obstacle in the ego direction's lanes
    "obstacle_in_ego_lane",
)
FAR_M = 60.0
MAX_WAIT_S = 10.0


@dataclass(frozen=True)
class KeyframeWorld:
    command: str
    situation: str
    state: tuple[float, ...]  # STATE_FEATURES order


def scene_path(dataroot: Path, scene_name: str) -> Path:
    return Path(dataroot) / WORLD_DIR / f"{scene_name}.json"


def write_scene(dataroot: Path, scene_name: str, keyframes: dict[str, KeyframeWorld]) -> None:
    path = scene_path(dataroot, scene_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "state_features": list(STATE_FEATURES),
        "keyframes": {
            token: {"command": k.command, "situation": k.situation, "state": list(k.state)}
            for token, k in keyframes.items()
        },
    }
    path.write_text(json.dumps(content, indent=1), encoding="utf-8")


def read_scene(dataroot: Path, scene_name: str) -> dict[str, KeyframeWorld]:
    """Sample token -> facts of a scene; empty when the dataset has no world folder for it."""
    path = scene_path(dataroot, scene_name)
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        if content["state_features"] != list(STATE_FEATURES):
            raise ValueError(f"state features {content['state_features']} != {STATE_FEATURES}")
        return {
            token: KeyframeWorld(
                str(k["command"]), str(k["situation"]), tuple(float(v) for v in k["state"])
            )
            for token, k in content["keyframes"].items()
        }
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"cannot read world annotations {path}: {error}") from error
