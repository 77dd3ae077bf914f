"""Time the data path: index build, JPEG decode, DataLoader throughput.

    .venv/bin/python -m benchmarks.data_loading [--dataroot D --version V --split S]
        [--work-dir /tmp/occvla_bench_data] [--batch-size 4] [--epochs 3]

Without ``--dataroot`` it first generates (untimed) a synthetic dataset with nuScenes-sized
1600x900 camera images: 2 scenes x 10 s (40 keyframes, 240 images), no camera sweeps. Then it
measures, side by side in one run:

- index build: the devkit walk into records (cold, ``rebuild=True``) and a cache read;
- JPEG decode of every keyframe image to S x S, reduced (``IMREAD_REDUCED_COLOR_*``) vs full;
- DataLoader samples/s of the planning dataset at S = 112 (tiny model) and 224 (PaliGemma2),
  with 0 and 2 workers, reduced and full decode: steady state over ``--epochs`` epochs after a
  warm-up epoch (persistent workers), batch ``--batch-size``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from machine import describe_machine

os.environ.setdefault("MPLBACKEND", "Agg")


def _generate(directory: Path) -> Path:
    from occvla_ros.data.synth import SynthConfig, generate_dataset

    dataroot = directory / "nuscenes"
    if not (dataroot / "v1.0-mini").is_dir():
        config = SynthConfig(num_scenes=2, scene_duration_s=10.0, camera_sweeps=False)
        print(f"generating a synthetic dataset into {dataroot} (not timed) ...", flush=True)
        generate_dataset(dataroot, config)
    return dataroot


def _throughput(
    records, size: int, workers: int, *, reduced: bool, batch_size: int, epochs: int
) -> float:
    from torch.utils.data import DataLoader

    from occvla_ros.data.datasets import KeyframeDataset, collate_keyframes

    dataset = KeyframeDataset(records, "planning", size, reduced_decode=reduced)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_keyframes,
        persistent_workers=workers > 0,
    )
    for _ in loader:  # warm-up epoch: worker start-up and page cache are not measured
        pass
    started = time.perf_counter()
    count = sum(len(batch["token"]) for _ in range(epochs) for batch in loader)
    return count / (time.perf_counter() - started)


def _decode_seconds(paths: list[str], size: int, reduced: bool) -> float:
    from occvla_ros.data.images import load_image

    started = time.perf_counter()
    for path in paths:
        load_image(path, size, reduced_decode=reduced)
    return (time.perf_counter() - started) / len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataroot", type=Path, help="existing dataset (default: generate one)")
    parser.add_argument("--version", default="v1.0-mini")
    parser.add_argument("--split", default="all")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/occvla_bench_data"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after a warm-up one")
    args = parser.parse_args()
    print(describe_machine())

    import torch

    torch.set_num_threads(1)  # workers and the main process share the cores fairly
    dataroot = args.dataroot or _generate(args.work_dir)

    from occvla_ros.data.index import load_index

    started = time.perf_counter()
    import nuscenes.nuscenes  # noqa: F401  (its import cost is reported separately)

    devkit_import = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        index = load_index(
            dataroot, args.version, args.split, cache_dir=cache, rebuild=True, progress=False
        )
        build = time.perf_counter() - started
        started = time.perf_counter()
        cached = load_index(dataroot, args.version, args.split, cache_dir=cache, progress=False)
        read = time.perf_counter() - started
        assert cached.from_cache
    records = index.records
    print(f"dataset: {dataroot} {args.version}/{args.split}: {len(records)} keyframes")
    print(f"devkit import {devkit_import:.2f} s")
    print(f"index build (devkit tables + records + write) {build:.2f} s; cache read {read:.3f} s")

    paths = [path for record in records for path in record.image_paths]
    print("\n| S | decode reduced ms/img | decode full ms/img | full / reduced |")
    print("|---|---|---|---|")
    for size in (112, 224):
        reduced = _decode_seconds(paths, size, True)
        full = _decode_seconds(paths, size, False)
        print(f"| {size} | {1e3 * reduced:.1f} | {1e3 * full:.1f} | {full / reduced:.2f} |")

    print("\n| S | workers | samples/s reduced | samples/s full | reduced / full |")
    print("|---|---|---|---|---|")
    for size in (112, 224):
        for workers in (0, 2):
            reduced = _throughput(
                records, size, workers, reduced=True, batch_size=args.batch_size, epochs=args.epochs
            )
            full = _throughput(
                records,
                size,
                workers,
                reduced=False,
                batch_size=args.batch_size,
                epochs=args.epochs,
            )
            print(f"| {size} | {workers} | {reduced:.1f} | {full:.1f} | {reduced / full:.2f} |")


if __name__ == "__main__":
    main()
