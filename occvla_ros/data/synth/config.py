"""Configuration of the procedural driving world (a typed, validated dataclass)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from occvla_ros.errors import ConfigError

SUPPORTED_VERSIONS = ("v1.0-mini", "v1.0-trainval")
# How many scene names the devkit's split lists hold per version (train, val).
SPLIT_NAME_COUNTS = {"v1.0-mini": (8, 2), "v1.0-trainval": (700, 150)}


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Every field is validated in ``__post_init__``."""

    # Randomness: the same seed and config give byte-identical datasets.
    seed: int = 0

    # Dataset size and layout.
    num_scenes: int = 2
    scene_duration_s: float = 20.0  # keyframes at 2 Hz: 20 s -> 40 keyframes, as in nuScenes
    version: str = "v1.0-mini"
    val_fraction: float = 0.2  # share of scenes named from the devkit's val list (>= 1 if 2+)

    # Cameras.
    image_width: int = 1600
    image_height: int = 900
    camera_sweeps: bool = True  # 12 Hz non-key camera frames in sweeps/
    jpeg_quality: int = 90

    # LIDAR_TOP: 32 beams (as the nuScenes HDL-32E) x this many azimuth steps per turn.
    lidar_azimuth_steps: int = 1084
    lidar_max_range_m: float = 70.0

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.version not in SUPPORTED_VERSIONS:
            raise ConfigError(f"version must be one of {SUPPORTED_VERSIONS}, got {self.version!r}")
        _require_int_in("num_scenes", self.num_scenes, 1, 850)
        if not 2.0 <= float(self.scene_duration_s) <= 60.0:
            raise ConfigError(
                f"scene_duration_s must be in [2, 60] seconds, got {self.scene_duration_s!r}"
            )
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        _require_int_in("image_width", self.image_width, 64, 4096)
        _require_int_in("image_height", self.image_height, 36, 4096)
        _require_int_in("jpeg_quality", self.jpeg_quality, 10, 100)
        _require_int_in("lidar_azimuth_steps", self.lidar_azimuth_steps, 90, 4000)
        if not 10.0 <= float(self.lidar_max_range_m) <= 200.0:
            raise ConfigError(
                f"lidar_max_range_m must be in [10, 200], got {self.lidar_max_range_m!r}"
            )
        train, val = self.split_counts
        max_train, max_val = SPLIT_NAME_COUNTS[self.version]
        if train > max_train or val > max_val:
            hint = "; use version v1.0-trainval for bigger sets" if max_train == 8 else ""
            raise ConfigError(
                f"{self.version} has names for at most {max_train} train and {max_val} val "
                f"scenes; {self.num_scenes} scenes with val_fraction={self.val_fraction} need "
                f"{train} train and {val} val{hint}"
            )

    @property
    def num_keyframes_per_scene(self) -> int:
        return round(float(self.scene_duration_s) * 2.0)

    @property
    def split_counts(self) -> tuple[int, int]:
        """(train scenes, val scenes): at least one val scene once there are two scenes."""
        val = round(self.num_scenes * float(self.val_fraction))
        if self.num_scenes >= 2 and self.val_fraction > 0:
            val = max(val, 1)
        if self.version == "v1.0-mini" and self.num_scenes <= 10 and self.val_fraction > 0:
            val = min(val, SPLIT_NAME_COUNTS["v1.0-mini"][1])
        return self.num_scenes - val, val

    def to_dict(self) -> dict:
        return asdict(self)


def _require_int_in(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
