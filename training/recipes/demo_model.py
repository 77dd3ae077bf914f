"""The demo model's recipe, one command: data, three stages per seed, baselines, held-out proof.

    python -m training.recipes.demo_model --out runs/demo_model [--seeds 0 1 2] \\
        [--ship models/demo_tiny] [--scene-tokenizer RUN/checkpoint] [--steps planning=3000 ...]

(``make demo-model`` runs it with the defaults and ships the result.) Every step is the
documented command a user would type, run as a subprocess, so the recipe is exactly those
commands:

1. ``occvla synth``: one synthetic v1.0-trainval set; ``--val-fraction`` of its scenes form the
   ``val`` split, scenes never seen in training.
2. The scene tokenizer, once (``--stage tokenizer``, ``training/configs/tiny-tokenizer.yaml``,
   ``--tokenizer-steps``), unless ``--scene-tokenizer`` names a trained one: stage 2 decodes its
   occupancy through it, frozen.
3. Per seed (the training seed: initialisation and data order): ``python -m training.train``
   stages ``qa`` -> ``occupancy_language`` -> ``planning`` (``training/configs/demo_model.yaml``,
   each stage's steps and batch size from ``STAGE_PLAN``), ``occvla train-ego-baseline
   --with-command`` (the ego+command MLP: the same command the model reads) and
   ``occvla evaluate --ablate-cameras`` on ``val``.
4. ``summary.json`` / ``summary.md`` in ``--out``: mean and standard deviation over the seeds of
   the ST-P3 L2 and collision of the model, the model with its cameras blanked, the ego MLP and
   constant velocity; meta-action accuracy against the majority class; the per-situation table.
5. ``--ship DIR``: seed 0's planning checkpoint copied to DIR with ``MODEL_CARD.md``.

An existing ``--out`` is refused (results are never overwritten).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from occvla_ros.errors import ConfigError, OccvlaError

logger = logging.getLogger("training.recipes.demo_model")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_model.yaml"
TOKENIZER_CONFIG = CONFIG.with_name("tiny-tokenizer.yaml")
VERSION = "v1.0-trainval"
METHODS = ("model", "model_no_cameras", "ego_command_mlp", "constant_velocity")
CARD = "MODEL_CARD.md"


@dataclass(frozen=True)
class StagePlan:
    name: str
    steps: int
    batch_size: int


# Sized for the 60-minute budget of three seeds on 2 CPU cores. Single-thread CPU seconds per step
# measured on the development machine (tiny preset, docs/results.md): qa (batch 4) 0.33 s,
# occupancy_language (batch 2, full-resolution frozen decoder) 2.6 s, planning (batch 8, scoring
# the 20 meta-actions for the head's input) 0.47 s.
STAGE_PLAN: tuple[StagePlan, ...] = (
    StagePlan("qa", steps=100, batch_size=4),
    StagePlan("occupancy_language", steps=120, batch_size=2),
    StagePlan("planning", steps=800, batch_size=8),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.recipes.demo_model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, help="new directory for everything")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scenes", type=int, default=40, help="synthetic scenes in all")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per scene")
    parser.add_argument("--val-fraction", type=float, default=0.3, help="held-out scene share")
    parser.add_argument("--data-seed", type=int, default=1, help="seed of the synthetic world")
    parser.add_argument(
        "--steps",
        nargs="+",
        default=[],
        metavar="STAGE=N",
        help="override a stage's steps, e.g. planning=3000",
    )
    parser.add_argument(
        "--scene-tokenizer", type=Path, help="a trained scene tokenizer (RUN/checkpoint) to reuse"
    )
    parser.add_argument("--tokenizer-steps", type=int, default=160)
    parser.add_argument("--ship", type=Path, help="copy seed 0's checkpoint here with a card")
    return parser.parse_args(argv)


def stage_plan(overrides: list[str]) -> tuple[StagePlan, ...]:
    steps = {}
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in {s.name for s in STAGE_PLAN} or not value.isdigit() or int(value) < 1:
            raise ConfigError(f"--steps {item!r}: expected STAGE=N with a stage of {STAGE_PLAN}")
        steps[name] = int(value)
    return tuple(replace(s, steps=steps.get(s.name, s.steps)) for s in STAGE_PLAN)


def _run(command: list[str], log: Path) -> float:
    """Run one documented command, its output appended to ``log``; returns its seconds."""
    logger.info("$ %s", " ".join(command))
    start = time.perf_counter()
    with log.open("a") as stream:
        stream.write(f"$ {' '.join(command)}\n")
        stream.flush()
        result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, check=False)
    if result.returncode:
        raise OccvlaError(f"step failed (exit {result.returncode}): {' '.join(command)}; see {log}")
    return time.perf_counter() - start


def _stage_config(directory: Path, plan: StagePlan, seed: int) -> Path:
    """The recipe config with this stage's batch size and the seed (train.py reads one YAML)."""
    data = yaml.safe_load(CONFIG.read_text())
    data["training"] = {**data.get("training", {}), "batch_size": plan.batch_size, "seed": seed}
    path = directory / f"{plan.name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _loader(args: argparse.Namespace, data: Path) -> list[str]:
    return ["--dataroot", str(data), "--version", VERSION, "--cache-dir", str(args.out / "cache")]


def train_tokenizer(args: argparse.Namespace, data: Path, log: Path) -> float:
    """The scene tokenizer shared by every seed's stage 2; returns its seconds."""
    command = [sys.executable, "-m", "training.train", "--stage", "tokenizer"]
    command += ["--config", str(TOKENIZER_CONFIG), *_loader(args, data), "--split", "train"]
    command += ["--val-split", "val", "--out", str(args.out / "tokenizer")]
    return _run([*command, "--max-steps", str(args.tokenizer_steps)], log)


def train_seed(
    args: argparse.Namespace, data: Path, seed: int, tokenizer: Path, log: Path
) -> dict[str, float]:
    """Three stages, the ego MLP and the held-out evaluation of one seed; returns timings."""
    python = sys.executable
    root = args.out / f"seed{seed}"
    configs = root / "configs"
    configs.mkdir(parents=True)
    loader = _loader(args, data)
    seconds: dict[str, float] = {}
    init: Path | None = None
    for plan in stage_plan(args.steps):
        command = [python, "-m", "training.train", "--stage", plan.name]
        command += ["--config", str(_stage_config(configs, plan, seed)), *loader]
        command += ["--split", "train", "--out", str(root / plan.name)]
        command += ["--max-steps", str(plan.steps)]
        if init is not None:
            command += ["--init", str(init)]
        if plan.name == "occupancy_language":
            command += ["--scene-tokenizer", str(tokenizer)]
        seconds[plan.name] = _run(command, log)
        init = root / plan.name / "checkpoint"
    occvla = [python, "-m", "occvla_ros.cli"]
    seconds["ego_mlp"] = _run(
        [
            *occvla,
            "train-ego-baseline",
            *loader,
            "--split",
            "train",
            "--out",
            str(root / "ego_mlp"),
            "--seed",
            str(seed),
            "--with-command",
        ],
        log,
    )
    seconds["evaluate"] = _run(
        [
            *occvla,
            "evaluate",
            *loader,
            "--split",
            "val",
            "--checkpoint",
            str(init),
            "--baseline-checkpoint",
            str(root / "ego_mlp"),
            "--out",
            str(root / "eval"),
            "--ablate-cameras",
        ],
        log,
    )
    return seconds


def _mean_std(values: list[float | None]) -> dict[str, float | None]:
    known = [v for v in values if v is not None]
    if not known:
        return {"mean": None, "std": None, "n": 0}
    spread = statistics.stdev(known) if len(known) > 1 else 0.0
    return {"mean": statistics.fmean(known), "std": spread, "n": len(known)}


def summarise(results: list[dict]) -> dict:
    """Mean and spread over seeds of what the issue's proof asks for."""
    planning = {}
    for method in METHODS:
        tables = [r["planning"].get(method, {}).get("stp3", {}).get("table") for r in results]
        planning[method] = {
            metric: _mean_std([t[metric]["avg"] if t else None for t in tables])
            for metric in ("l2", "collision")
        }
    meta = [r["meta_action"] for r in results]
    majority = [max(sum(row) for row in m["confusion"]) / m["count"] for m in meta]
    situations: dict[str, dict] = {}
    for name in sorted({s for r in results for s in r.get("situations", {})}):
        entries = [r["situations"][name] for r in results if name in r.get("situations", {})]
        situations[name] = {
            "samples": entries[0]["samples"],
            **{
                method: _mean_std(
                    [e["planning"][method]["l2"]["avg"] for e in entries if method in e["planning"]]
                )
                for method in METHODS
            },
        }
    return {
        "seeds": len(results),
        "val_samples": results[0]["planning"]["model"]["stp3"]["sample_count"],
        "stp3_avg": planning,
        "l2_increase_without_cameras": _mean_std(
            [r["camera_ablation"]["l2_increase"] for r in results]
        ),
        "meta_action_joint_accuracy": _mean_std([m["joint_accuracy"] for m in meta]),
        "meta_action_majority_class": _mean_std(majority),
        "situations_stp3_avg_l2": situations,
    }


def _cell(entry: dict, scale: float = 1.0, digits: int = 3) -> str:
    if entry["mean"] is None:
        return "n/a"
    return f"{entry['mean'] * scale:.{digits}f} ± {entry['std'] * scale:.{digits}f}"


def render_summary(summary: dict, seconds: dict) -> str:
    labels = {
        "model": "OccVLA tiny (cameras)",
        "model_no_cameras": "OccVLA tiny, six cameras blanked",
        "ego_command_mlp": "ego+command MLP",
        "constant_velocity": "constant velocity",
    }
    lines = [
        f"# Demo model: held-out results over {summary['seeds']} seeds (mean ± std)",
        "",
        f"ST-P3 convention, {summary['val_samples']} valid val keyframes of scenes never seen "
        "in training.",
        "",
        "| method | avg L2 (m) | avg collision (%) |",
        "|---|---|---|",
    ]
    for method, entry in summary["stp3_avg"].items():
        lines.append(
            f"| {labels[method]} | {_cell(entry['l2'])} | {_cell(entry['collision'], 100, 2)} |"
        )
    lines += [
        "",
        f"- L2 increase with the cameras blanked: "
        f"{_cell(summary['l2_increase_without_cameras'], 100, 1)} %",
        f"- meta-action joint accuracy {_cell(summary['meta_action_joint_accuracy'], 100, 1)} %"
        f" (majority class {_cell(summary['meta_action_majority_class'], 100, 1)} %)",
        "",
    ]
    if summary["situations_stp3_avg_l2"]:
        lines += [
            "| situation | samples | " + " | ".join(labels[m] for m in METHODS) + " |",
            "|---" * (2 + len(METHODS)) + "|",
        ]
        for name, entry in summary["situations_stp3_avg_l2"].items():
            cells = " | ".join(_cell(entry[m]) for m in METHODS)
            lines.append(f"| {name} | {entry['samples']} | {cells} |")
        lines.append("")
    lines += ["Wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()), ""]
    return "\n".join(lines)


def ship(args: argparse.Namespace, summary_md: str, seconds: dict) -> Path:
    source = args.out / f"seed{args.seeds[0]}" / "planning" / "checkpoint"
    if args.ship.exists():
        shutil.rmtree(args.ship)
    shutil.copytree(source, args.ship)
    command = "python -m training.recipes.demo_model " + " ".join(sys.argv[1:])
    card = [
        "# OccVLA tiny demo model",
        "",
        f"Trained by `{command}` (`make demo-model`): the tiny preset "
        f"(training/configs/demo_model.yaml), seed {args.seeds[0]}, on the `train` split of "
        f"`occvla synth --scenes {args.scenes} --duration {args.duration:g} --version {VERSION} "
        f"--seed {args.data_seed} --val-fraction {args.val_fraction:g}` (384 x 216 images); "
        f"stages {', '.join(f'{s.name} {s.steps} steps' for s in stage_plan(args.steps))}.",
        f"Total wall time of the recipe: {sum(seconds.values()) / 60:.1f} min.",
        "",
        summary_md,
    ]
    (args.ship / CARD).write_text("\n".join(card) + "\n")
    return args.ship


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    try:
        stage_plan(args.steps)
        if args.tokenizer_steps < 1:
            raise ConfigError(f"--tokenizer-steps must be positive, got {args.tokenizer_steps}")
        if args.scene_tokenizer is not None and not args.scene_tokenizer.is_dir():
            raise ConfigError(f"--scene-tokenizer {args.scene_tokenizer} is not a directory")
        if args.out.exists():
            raise ConfigError(f"{args.out} exists: choose a new --out (results are never replaced)")
        args.out.mkdir(parents=True)
        log = args.out / "recipe.log"
        data = args.out / "data"
        seconds = {
            "synth": _run(
                [
                    sys.executable,
                    "-m",
                    "occvla_ros.cli",
                    "synth",
                    "--out",
                    str(data),
                    "--scenes",
                    str(args.scenes),
                    "--duration",
                    str(args.duration),
                    "--width",
                    "384",
                    "--height",
                    "216",
                    "--no-sweeps",
                    "--version",
                    VERSION,
                    "--seed",
                    str(args.data_seed),
                    "--val-fraction",
                    str(args.val_fraction),
                ],
                log,
            )
        }
        tokenizer = args.scene_tokenizer
        if tokenizer is None:
            seconds["tokenizer"] = train_tokenizer(args, data, log)
            tokenizer = args.out / "tokenizer" / "checkpoint"
        results = []
        for seed in args.seeds:
            for name, value in train_seed(args, data, seed, tokenizer, log).items():
                seconds[f"seed{seed} {name}"] = value
            results.append(
                json.loads((args.out / f"seed{seed}" / "eval" / "results.json").read_text())
            )
        summary = summarise(results)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        summary_md = render_summary(summary, seconds)
        (args.out / "summary.md").write_text(summary_md)
        print(summary_md)
        if args.ship:
            print(f"shipped {ship(args, summary_md, seconds)}")
    except OccvlaError as error:
        logger.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
