"""``occvla synth``: write a synthetic nuScenes-format dataset with Occ3D and OmniDrive labels."""

from __future__ import annotations

import argparse

from occvla_ros.data.synth.config import SUPPORTED_VERSIONS, SynthConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SynthConfig()
    parser.add_argument("--out", required=True, help="output dataset root (must not hold VERSION)")
    parser.add_argument("--scenes", type=int, default=defaults.num_scenes, help="number of scenes")
    parser.add_argument(
        "--duration",
        type=float,
        default=defaults.scene_duration_s,
        help="seconds per scene (keyframes at 2 Hz)",
    )
    parser.add_argument("--width", type=int, default=defaults.image_width, help="image width")
    parser.add_argument("--height", type=int, default=defaults.image_height, help="image height")
    parser.add_argument(
        "--no-sweeps",
        action="store_true",
        help="write keyframe images only (no 12 Hz camera sweeps)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument(
        "--version",
        default=defaults.version,
        choices=SUPPORTED_VERSIONS,
        help="nuScenes version name; scene names come from its split lists",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=defaults.val_fraction,
        help="share of scenes named from the val split",
    )
    parser.add_argument("--jpeg-quality", type=int, default=defaults.jpeg_quality)
    parser.add_argument(
        "--lidar-azimuth-steps",
        type=int,
        default=defaults.lidar_azimuth_steps,
        help="LIDAR_TOP points per beam and turn (32 beams)",
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from occvla_ros.data.synth.generate import camera_frame_count, generate_dataset

    config = SynthConfig(
        seed=args.seed,
        num_scenes=args.scenes,
        scene_duration_s=args.duration,
        version=args.version,
        val_fraction=args.val_fraction,
        image_width=args.width,
        image_height=args.height,
        camera_sweeps=not args.no_sweeps,
        jpeg_quality=args.jpeg_quality,
        lidar_azimuth_steps=args.lidar_azimuth_steps,
    )
    total = camera_frame_count(config) * config.num_scenes
    with tqdm(total=total, unit="frame", desc="synth") as bar:
        summary = generate_dataset(args.out, config, progress=bar.update)
    print(
        f"wrote {summary.scenes} scenes, {summary.keyframes} keyframes, {summary.images} images, "
        f"{summary.lidar_scans} lidar scans, {summary.annotations} annotations to "
        f"{summary.output_dir} in {summary.seconds['total']:.1f} s"
    )
    return 0
