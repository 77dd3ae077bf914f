"""A cached index of keyframe records per dataset + split, so training never walks the devkit.

The first :func:`load_index` for a (dataroot, version, split, options) builds the records with the
devkit (progress bar) and writes ``records.json`` + ``arrays.npz`` + ``meta.json`` (no pickle)
into ``<cache_dir>/<key>/``; later calls read them back. The cache is rebuilt when its
fingerprint changes (the sizes and modification times of the version's table files, of the
OmniDrive folders and of the CAN-bus folder, the loader's schema version and the loader options)
or when a keyframe's Occ3D labels appeared or vanished since: each read checks every record's
``<occupancy_root>/<scene>/<token>/labels.npz`` (one ``stat`` per keyframe), because copying
labels into existing scene folders (``tar``, ``rsync -a``, ``cp -p``) may leave every folder time
the index saw unchanged.

Default cache directory: ``$OCCVLA_CACHE_DIR`` or ``~/.cache/occvla_ros/index`` (never inside the
dataset, which may be read-only).

The ``index`` subcommand (``add_arguments`` / ``run``) builds or checks an index and prints a
summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from occvla_ros.data.nuscenes_loader import LoaderOptions, load_records, occupancy_label_path
from occvla_ros.data.records import KeyframeRecord, save_records
from occvla_ros.data.records import load_records as read_records
from occvla_ros.errors import DataError

LOGGER = logging.getLogger(__name__)
# Bump whenever what a record holds or how it is computed changes.
SCHEMA_VERSION = 3
_FILES = ("records.json", "arrays.npz", "meta.json")


@dataclass(frozen=True)
class KeyframeIndex:
    records: tuple[KeyframeRecord, ...]
    directory: Path
    fingerprint: str
    from_cache: bool

    def __len__(self) -> int:
        return len(self.records)

    def meta_action_histogram(self) -> Counter:
        return Counter(r.meta_action or "<no future>" for r in self.records)


def default_cache_dir() -> Path:
    configured = os.environ.get("OCCVLA_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "occvla_ros" / "index"


def _stat_entry(path: Path) -> list:
    try:
        stat = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path), stat.st_size, stat.st_mtime_ns]


def fingerprint(dataroot: Path, version: str, split: str, options: LoaderOptions) -> str:
    """Hash of what the records depend on (files' sizes and mtimes, schema, options)."""
    tables = sorted((dataroot / version).glob("*.json"))
    if not tables:
        raise DataError(f"no nuScenes tables (*.json) in {dataroot / version}")
    entries = [_stat_entry(path) for path in tables]
    label_dirs = [  # Occ3D labels are checked record by record (_occupancy_changed)
        *(Path(options.omnidrive_root, kind) for kind in ("vqa", "desc")),
        dataroot / "can_bus",
    ]
    for directory in label_dirs:
        entries.append(_stat_entry(directory))
        # New or removed per-split folders change the parent's children, not its own mtime.
        if directory.is_dir():
            entries.extend(_stat_entry(child) for child in sorted(directory.iterdir()))
    content = {
        "schema": SCHEMA_VERSION,
        "dataroot": str(dataroot),
        "version": version,
        "split": split,
        "options": asdict(options),
        "files": entries,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def index_directory(
    cache_dir: Path, dataroot: Path, version: str, split: str, options: LoaderOptions
) -> Path:
    identity = json.dumps([str(dataroot), version, split, asdict(options)], sort_keys=True)
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return cache_dir / f"{version}-{split}-{key}"


def load_index(
    dataroot: str | Path,
    version: str,
    split: str,
    options: LoaderOptions | None = None,
    *,
    cache_dir: str | Path | None = None,
    rebuild: bool = False,
    progress: bool = True,
) -> KeyframeIndex:
    """The split's keyframe records, read from the cache when it is current, else rebuilt."""
    dataroot = Path(dataroot).absolute()
    options = (options or LoaderOptions()).resolved(dataroot)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    directory = index_directory(cache_dir, dataroot, version, split, options)
    current = fingerprint(dataroot, version, split, options)
    if not rebuild:
        cached = _read_cached(directory, current)
        if cached is not None and not _occupancy_changed(cached, options, directory):
            return KeyframeIndex(tuple(cached), directory, current, from_cache=True)
    records = load_records(dataroot, version, split, options, progress=progress)
    _write(directory, records, current)
    return KeyframeIndex(tuple(records), directory, current, from_cache=False)


def _read_cached(directory: Path, current: str) -> list[KeyframeRecord] | None:
    meta_path = directory / "meta.json"
    if not all((directory / name).is_file() for name in _FILES):
        LOGGER.info("no keyframe index in %s: building it", directory)
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        LOGGER.warning("unreadable %s: rebuilding the keyframe index", meta_path)
        return None
    if meta.get("fingerprint") != current:
        LOGGER.info("dataset or loader changed since %s was built: rebuilding", directory)
        return None
    try:
        return read_records(directory / "records.json", directory / "arrays.npz")
    except DataError as error:
        LOGGER.warning("%s: rebuilding the keyframe index", error)
        return None


def _occupancy_changed(
    records: list[KeyframeRecord], options: LoaderOptions, directory: Path
) -> bool:
    """Whether any record's Occ3D labels appeared or vanished since the index was built."""
    changed = sum(
        occupancy_label_path(options.occupancy_root, r.scene_name, r.token).is_file()
        != (r.occupancy_path is not None)
        for r in records
    )
    if changed:
        LOGGER.info(
            "%d keyframes gained or lost Occ3D labels since %s: rebuilding", changed, directory
        )
    return bool(changed)


def _write(directory: Path, records: list[KeyframeRecord], current: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # meta.json goes last: a build interrupted before it is never mistaken for a current one.
        (directory / "meta.json").unlink(missing_ok=True)
        save_records(records, directory / "records.json", directory / "arrays.npz")
        meta = {"fingerprint": current, "schema": SCHEMA_VERSION, "keyframes": len(records)}
        (directory / "meta.json").write_text(json.dumps(meta))
    except OSError as error:
        raise DataError(f"cannot write the keyframe index to {directory}: {error}") from error


def add_loader_arguments(parser: argparse.ArgumentParser) -> None:
    """Dataset options shared by every command that reads keyframes."""
    parser.add_argument("--dataroot", required=True, type=Path, help="nuScenes directory")
    parser.add_argument("--version", default="v1.0-mini", help="v1.0-mini or v1.0-trainval")
    parser.add_argument("--split", default="mini_train", help="devkit split, or 'all'")
    parser.add_argument("--occupancy-root", help="Occ3D gts/ folder (default DATAROOT/gts)")
    parser.add_argument(
        "--omnidrive-root", help="OmniDrive folder with vqa/ desc/ (default DATAROOT/omnidrive)"
    )
    parser.add_argument("--no-can-bus", action="store_true", help="ignore DATAROOT/can_bus")
    parser.add_argument(
        "--cache-dir", type=Path, help=f"index cache (default {default_cache_dir()})"
    )


def index_from_arguments(args: argparse.Namespace, *, rebuild: bool = False) -> KeyframeIndex:
    for flag, root in (
        ("--occupancy-root", args.occupancy_root),
        ("--omnidrive-root", args.omnidrive_root),
    ):
        if root is not None and not Path(root).is_dir():
            state = "is not a directory" if Path(root).exists() else "does not exist"
            raise DataError(f"{flag} {root} {state}")
    options = LoaderOptions(
        occupancy_root=args.occupancy_root,
        omnidrive_root=args.omnidrive_root,
        use_can_bus=not args.no_can_bus,
    )
    return load_index(
        args.dataroot, args.version, args.split, options, cache_dir=args.cache_dir, rebuild=rebuild
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_loader_arguments(parser)
    parser.add_argument("--rebuild", action="store_true", help="rebuild even when current")


def run(args: argparse.Namespace) -> int:
    index = index_from_arguments(args, rebuild=args.rebuild)
    records = index.records
    state = "up to date (read from cache)" if index.from_cache else "built"
    print(f"index {state}: {index.directory}")
    print(f"keyframes: {len(records)} in {len({r.scene_token for r in records})} scenes")
    sources = Counter(r.ego_state_source for r in records)
    print("ego state from: " + ", ".join(f"{k} {v}" for k, v in sorted(sources.items())))
    print(f"with Occ3D labels: {sum(r.occupancy_path is not None for r in records)}")
    print(f"with OmniDrive QA: {sum(bool(r.qa) for r in records)}")
    print(f"with all 6 future keyframes: {sum(bool(r.future_mask.all()) for r in records)}")
    print("meta-actions:")
    for action, count in index.meta_action_histogram().most_common():
        print(f"  {count:6d}  {action}")
    return 0
