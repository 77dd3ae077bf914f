"""OccVLA checkpoints: safetensors weights + YAML configuration + tokenizer + a manifest.

Layout of a checkpoint directory::

    model.safetensors   tensors (never pickled)
    config.yaml         the OccVLAConfig the model was built with
    tokenizer/          tokenizer files (tokenizer.json, tokenizer_config.json, ...)
    manifest.json       format version, preset, tensor count, hash of (name, shape) pairs,
                        tied-weight aliases, and whether the backbone's base weights are inside

The tiny preset stores every tensor. A model whose backbone came from a local PaliGemma2
directory (``backbone.weights_dir``) stores only what training changes or adds: LoRA adapters,
the projector copy peft trains, camera embeddings, occupancy branch (with its frozen VQ-VAE)
and planning head; loading rebuilds the backbone from the recorded ``weights_dir`` first.
Every failure is a :class:`CheckpointError` naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import logging
import stat
from pathlib import Path

import torch

from occvla_ros.errors import CheckpointError, ConfigError
from occvla_ros.model.configuration import OccVLAConfig
from occvla_ros.model.occvla import OccVLA
from occvla_ros.model.processing import load_tokenizer

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
TOKENIZER_DIR = "tokenizer"


def _stored_state(
    model: OccVLA, state_dict: dict[str, torch.Tensor] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors to write, {tied alias: stored key}); base backbone weights dropped if external.

    Ties are found on the model's own parameters (one object under two names; this also holds
    for an FSDP-sharded model, whose storages are not accessible); the values come from
    ``state_dict`` when given (a full copy gathered from the shards).
    """
    external_backbone = model.config.backbone.weights_dir is not None
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if external_backbone and _is_base_backbone_key(key):
            continue
        identity = (id(tensor), tuple(tensor.shape))
        if identity in seen:  # tied weights (lm_head = token embeddings): store once
            aliases[key] = seen[identity]
            continue
        seen[identity] = key
        value = tensor if state_dict is None else state_dict[key]
        tensors[key] = value.detach().contiguous()
    return tensors, aliases


def _is_base_backbone_key(key: str) -> bool:
    return key.startswith("backbone.model.") and "lora_" not in key and "modules_to_save" not in key


def _shapes_hash(shapes: dict[str, list[int]]) -> str:
    text = "\n".join(f"{name}:{shape}" for name, shape in sorted(shapes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def save_checkpoint(
    model: OccVLA, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write ``model`` to ``directory`` (created if needed); returns the directory.

    ``state_dict``: the weights to write instead of the model's own (a full copy of a sharded
    model); the tokenizer, configuration and tied-weight layout still come from ``model``.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors, aliases = _stored_state(model, state_dict)
    save_file({k: v.cpu() for k, v in tensors.items()}, str(directory / WEIGHTS_FILE))
    model.config.save_yaml(directory / CONFIG_FILE)
    # safetensors writes its file private (0600); give it the mode every other checkpoint file
    # gets from the umask, so a planner running as another user can read the weights.
    (directory / WEIGHTS_FILE).chmod(stat.S_IMODE((directory / CONFIG_FILE).stat().st_mode))
    model.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
    manifest = {
        "format_version": FORMAT_VERSION,
        "preset": model.config.preset,
        "num_tensors": len(tensors),
        "shapes_sha256": _shapes_hash({k: list(v.shape) for k, v in tensors.items()}),
        "aliases": aliases,
        "backbone_weights": (
            "included"
            if model.config.backbone.weights_dir is None
            else f"external: {model.config.backbone.weights_dir}"
        ),
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    logger.info("saved checkpoint (%d tensors) to %s", len(tensors), directory)
    return directory


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read checkpoint manifest {path}: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported checkpoint format "
            f"{manifest.get('format_version') if isinstance(manifest, dict) else manifest!r}; "
            f"expected version {FORMAT_VERSION}"
        )
    return manifest


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error


def _check_tensors(
    tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path
) -> None:
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{path} does not match the model: {len(missing)} missing keys {missing[:5]}, "
            f"{len(extra)} unexpected keys {extra[:5]}"
        )
    wrong = [
        f"{key}: {list(tensors[key].shape)} != {list(value.shape)}"
        for key, value in expected.items()
        if tensors[key].shape != value.shape
    ]
    if wrong:
        raise CheckpointError(f"{path}: shape mismatch for {len(wrong)} tensors: {wrong[:5]}")


def _refuse_run_directory(directory: Path) -> None:
    """A training run directory given where its checkpoint was meant: say where that is."""
    if not (directory / "metrics.jsonl").is_file():
        return
    final = directory / "checkpoint"
    steps = sorted((directory / "checkpoints").glob("step-*/model"))
    where = final if final.is_dir() else (steps[-1] if steps else None)
    raise CheckpointError(
        f"{directory} is a training run directory, not a checkpoint; "
        + (f"its checkpoint is {where}" if where else "it holds no checkpoint yet")
    )


def load_checkpoint(
    directory: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    expected_preset: str | None = None,
) -> OccVLA:
    """Rebuild the OccVLA saved in ``directory``; validates configuration, keys and shapes."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    for name in (WEIGHTS_FILE, CONFIG_FILE, MANIFEST_FILE, TOKENIZER_DIR):
        if not (directory / name).exists():
            _refuse_run_directory(directory)
            raise CheckpointError(f"checkpoint {directory} is incomplete: {name} is missing")
    manifest = _read_manifest(directory)
    try:
        config = OccVLAConfig.load_yaml(directory / CONFIG_FILE)
    except ConfigError as error:
        raise CheckpointError(f"{directory / CONFIG_FILE}: {error}") from error
    if config.preset != manifest.get("preset"):
        raise CheckpointError(
            f"{directory}: config preset {config.preset!r} disagrees with the manifest's "
            f"{manifest.get('preset')!r}"
        )
    if expected_preset is not None and config.preset != expected_preset:
        raise CheckpointError(
            f"{directory} holds a {config.preset!r} model, expected {expected_preset!r}"
        )
    tensors = _read_tensors(directory / WEIGHTS_FILE)
    shapes = {key: list(value.shape) for key, value in tensors.items()}
    if _shapes_hash(shapes) != manifest.get("shapes_sha256"):
        raise CheckpointError(
            f"{directory / WEIGHTS_FILE} does not match its manifest (tensor names/shapes hash)"
        )
    model = OccVLA(config, load_tokenizer(directory / TOKENIZER_DIR))
    expected, aliases = _stored_state(model)
    if aliases != manifest.get("aliases"):
        raise CheckpointError(f"{directory}: tied-weight layout differs from the manifest")
    _check_tensors(tensors, expected, directory / WEIGHTS_FILE)
    model.load_state_dict(tensors, strict=False)
    model.to(device=device, dtype=dtype)
    model.eval()
    logger.info("loaded %s checkpoint from %s", config.preset, directory)
    return model
