"""`occvla evaluate`: run a checkpoint over a split and write results.json, report.md and figures.

The model is scored beside two ego-status-only baselines (constant velocity, and the ego MLP when
``--baseline-checkpoint`` is given) under the three planning conventions; meta-action accuracy
always, Occ3D occupancy with ``--with-occupancy``. ``--ablate-cameras`` also scores the same model
with all six camera images blanked (the vision ablation). Keyframes with a situation label (the
synthetic world's ``record.situation``) get the ST-P3 table per situation.
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime, timezone
from pathlib import Path

from occvla_ros.errors import CheckpointError, ConfigError, DataError
from occvla_ros.evaluation import report
from occvla_ros.evaluation.baselines import EgoStatusBaseline, constant_velocity
from occvla_ros.evaluation.evaluator import MODEL, MODEL_NO_CAMERAS, UNLABELLED, Evaluator
from occvla_ros.evaluation.planning import SAMPLE_SETS
from occvla_ros.model.device import DEVICE_HELP, resolve_device

logger = logging.getLogger(__name__)

FIGURE_DIR = "figures"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from occvla_ros.data.index import add_loader_arguments

    add_loader_arguments(parser)  # --dataroot --version --split, label roots, index cache
    parser.set_defaults(split="mini_val")
    parser.add_argument(
        "--checkpoint", required=True, type=Path, help="OccVLA checkpoint directory"
    )
    parser.add_argument("--out", required=True, type=Path, help="directory for the results")
    parser.add_argument(
        "--baseline-checkpoint",
        type=Path,
        help="ego-status MLP from `occvla train-ego-baseline` (scored beside the model)",
    )
    parser.add_argument(
        "--max-samples",
        type=int,
        help="evaluate only the first N keyframes (unreadable ones are skipped and counted)",
    )
    parser.add_argument(
        "--with-occupancy", action="store_true", help="also decode and score Occ3D occupancy"
    )
    parser.add_argument(
        "--ablate-cameras",
        action="store_true",
        help="also score the model with all six camera images blanked (zero pixel values, "
        "mid-grey after normalisation): how much the plan depends on vision",
    )
    parser.add_argument(
        "--with-qa",
        action="store_true",
        help="also answer one OmniDrive question per keyframe (exact match / ROUGE-L)",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu", help=f"torch device: {DEVICE_HELP}")
    parser.add_argument(
        "--uniad-sample-set",
        choices=SAMPLE_SETS,
        default="all",
        help="sample set of both UniAD tables (its uniad and stp3 strategies): all keyframes "
        "(UniAD's code) or only those with all 6 future keyframes (ST-P3's valid set)",
    )
    parser.add_argument("--figure-samples", type=int, default=6, help="panels per BEV figure")


def _check_arguments(args: argparse.Namespace) -> None:
    if not args.checkpoint.is_dir():
        raise CheckpointError(f"checkpoint directory {args.checkpoint} does not exist")
    if args.baseline_checkpoint is not None and not args.baseline_checkpoint.is_dir():
        raise CheckpointError(f"baseline checkpoint {args.baseline_checkpoint} does not exist")
    if not (args.dataroot / args.version).is_dir():
        raise DataError(f"no nuScenes version {args.version!r} under {args.dataroot}")
    for name in ("batch_size", "figure_samples", "max_samples"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    # The node's device rules; "auto" becomes the device it picks, for every later .to().
    args.device = str(resolve_device(args.device))


def _figures(evaluator: Evaluator, out_dir: Path) -> dict[str, str]:
    from occvla_ros.constants import OCC3D_CLASS_NAMES
    from occvla_ros.evaluation.figures import plot_bev_samples, plot_confusion

    figure_dir = out_dir / FIGURE_DIR
    figure_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, str] = {}
    if evaluator.first:
        plot_bev_samples(
            evaluator.first,
            figure_dir / "bev_samples.png",
            "Predicted vs ground-truth trajectories (first samples)",
        )
        figures["BEV: first samples"] = f"{FIGURE_DIR}/bev_samples.png"
        plot_bev_samples(
            evaluator.worst_samples(),
            figure_dir / "bev_worst_l2.png",
            "Samples with the largest model L2",
        )
        figures["BEV: worst L2"] = f"{FIGURE_DIR}/bev_worst_l2.png"
    if evaluator.occupancy is not None and evaluator.occupancy.confusion.sum():
        plot_confusion(
            evaluator.occupancy.confusion,
            list(OCC3D_CLASS_NAMES),
            figure_dir / "occupancy_confusion.png",
            "Occ3D confusion (voxels with mask_camera == 1)",
        )
        figures["Occupancy confusion"] = f"{FIGURE_DIR}/occupancy_confusion.png"
    if evaluator.meta_action.confusion.sum():
        plot_confusion(
            evaluator.meta_action.confusion,
            list(evaluator.meta_action.vocabulary.texts),
            figure_dir / "meta_action_confusion.png",
            "Meta-action confusion",
        )
        figures["Meta-action confusion"] = f"{FIGURE_DIR}/meta_action_confusion.png"
    return figures


def _answer_questions(args: argparse.Namespace, model, uses_command: bool) -> dict:
    """QA scores of the model's greedy answers to one OmniDrive question per keyframe."""
    from tqdm import tqdm

    from occvla_ros.evaluation.qa import QAMetric
    from occvla_ros.evaluation.sources import evaluation_loader

    metric = QAMetric(model.config.meta_actions)
    loader = evaluation_loader(args, model, stage="qa")
    for batch in tqdm(loader, desc="qa", unit="batch"):
        if batch is None:
            continue
        answers = model.generate_text(
            batch["pixel_values"].to(args.device),
            batch["ego_state"].to(args.device),
            questions=list(batch["question"]),
            commands=list(batch["command"]) if uses_command else None,
        )
        metric.update(answers, batch["answer"])
    return metric.compute()


def evaluate(args: argparse.Namespace) -> dict:
    """Run the evaluation described by parsed ``args``; returns the result dictionary."""
    _check_arguments(args)
    import torch
    from tqdm import tqdm

    from occvla_ros.evaluation.samples import NuScenesContext
    from occvla_ros.evaluation.sources import (
        evaluation_loader,
        fill_past,
        load_model,
        model_uses_command,
    )

    model = load_model(args.checkpoint, args.device)
    baseline = (
        EgoStatusBaseline.load(args.baseline_checkpoint) if args.baseline_checkpoint else None
    )
    baseline_method = baseline.method if baseline else None
    uses_command = model_uses_command(model)
    loader = evaluation_loader(args, model)
    context = NuScenesContext(args.dataroot, args.version)
    methods = [
        MODEL,
        *([MODEL_NO_CAMERAS] if args.ablate_cameras else []),
        *([baseline_method] if baseline else []),
        "constant_velocity",
    ]
    evaluator = Evaluator(
        methods,
        vocabulary=model.config.meta_actions,
        with_occupancy=args.with_occupancy,
        figure_samples=args.figure_samples,
        uniad_sample_set=args.uniad_sample_set,
    )
    total = len(loader.dataset)
    if args.max_samples:
        total = min(total, args.max_samples)
    with tqdm(total=total, desc="evaluate", unit="sample") as progress:
        for batch in loader:
            remaining = total - evaluator.count
            if remaining <= 0:
                break
            if batch is None:  # every sample of the batch was unreadable (logged, counted)
                continue
            inputs = {
                "ego_state": batch["ego_state"].to(args.device),
                "commands": list(batch["command"]) if uses_command else None,
                "past_trajectory": batch["past_trajectory"].to(args.device),
                "past_mask": batch["past_mask"].to(args.device),
            }
            pixel_values = batch["pixel_values"].to(args.device)
            prediction = model.predict(pixel_values, with_occupancy=args.with_occupancy, **inputs)
            waypoints = prediction.waypoints.float().cpu().numpy()  # [B, 6, 2]
            ego_state = batch["ego_state"].numpy()
            count = min(len(waypoints), remaining)
            contexts = [context(token) for token in batch["token"][:count]]
            methods_waypoints = {
                MODEL: waypoints,
                "constant_velocity": constant_velocity(ego_state),
            }
            if args.ablate_cameras:
                blind = model.predict(torch.zeros_like(pixel_values), **inputs)
                methods_waypoints[MODEL_NO_CAMERAS] = blind.waypoints.float().cpu().numpy()
            if baseline is not None:
                past = fill_past(batch["past_trajectory"].numpy(), batch["past_mask"].numpy())
                methods_waypoints[baseline_method] = baseline.predict(
                    ego_state, past, commands=list(batch["command"])
                )  # an ego+command MLP reads the command, an ego-only one ignores it
            for index, sample_context in enumerate(contexts):
                occupancy = {}
                if args.with_occupancy:
                    occupancy = {
                        "occupancy_gt": batch["occupancy"][index].numpy(),
                        "occupancy_mask": batch["occupancy_mask"][index].numpy(),
                        "occupancy_prediction": prediction.occupancy[index].cpu().numpy(),
                    }
                evaluator.add_sample(
                    sample_context,
                    batch["trajectory"][index].numpy(),
                    batch["trajectory_mask"][index].numpy(),
                    {m: w[index] for m, w in methods_waypoints.items()},
                    **occupancy,
                    situation=batch["situation"][index] or UNLABELLED,
                )
            labels = batch["meta_action"][:count].numpy()
            labelled = labels >= 0  # -1: no future keyframe, no meta-action label
            evaluator.add_meta_actions(
                prediction.meta_action_indices[:count].cpu().numpy()[labelled], labels[labelled]
            )
            if args.ablate_cameras:
                evaluator.add_meta_actions(
                    blind.meta_action_indices[:count].cpu().numpy()[labelled],
                    labels[labelled],
                    method=MODEL_NO_CAMERAS,
                )
            progress.update(count)
    skipped = loader.dataset.num_skipped  # unreadable keyframes, each logged with its cause
    if evaluator.count == 0:
        cause = f"all {skipped} keyframes were unreadable" if skipped else "no samples"
        raise DataError(f"split {args.split!r} of {args.dataroot}: {cause}; nothing to evaluate")
    qa = _answer_questions(args, model, uses_command) if args.with_qa else None
    results = {
        "checkpoint": str(args.checkpoint),
        "baseline_checkpoint": str(args.baseline_checkpoint) if baseline else None,
        "dataroot": str(args.dataroot),
        "version": args.version,
        "split": args.split,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": {"cameras": True, "ego_status": True, "command": uses_command},
        "baselines": [report.METHOD_LABELS[m] for m in methods if m != MODEL],
        **evaluator.results(),
        "skipped_samples": skipped,
        "qa": qa,
    }
    if args.ablate_cameras:
        results["camera_ablation"] = camera_ablation(results)
    args.out.mkdir(parents=True, exist_ok=True)
    figures = _figures(evaluator, args.out)
    results["figures"] = figures
    report.write_json(results, args.out)
    report.write_markdown(results, figures, args.out)
    return results


def camera_ablation(results: dict) -> dict:
    """ST-P3 avg L2 with and without the cameras, its relative increase, meta-action accuracy."""
    seeing = results["planning"][MODEL]["stp3"]["table"]["l2"]["avg"]
    blind = results["planning"][MODEL_NO_CAMERAS]["stp3"]["table"]["l2"]["avg"]
    blind_meta = results["method_meta_actions"].get(MODEL_NO_CAMERAS)
    return {
        "blanking": "all six cameras, zero pixel values (mid-grey after normalisation)",
        "stp3_l2_avg": seeing,
        "stp3_l2_avg_no_cameras": blind,
        "l2_increase": None if not seeing or blind is None else blind / seeing - 1.0,
        "meta_action_joint_accuracy_no_cameras": blind_meta["joint_accuracy"]
        if blind_meta
        else None,
    }


def run(args: argparse.Namespace) -> int:
    from occvla_ros.output_dir import check_output_directory

    check_output_directory(args.out)
    results = evaluate(args)
    stp3 = results["planning"][MODEL]["stp3"]["table"]
    line = (
        f"{results['sample_count']} samples; ST-P3 avg L2 {report.format_value(stp3['l2']['avg'])} "
        f"m, avg collision {report.format_value(stp3['collision']['avg'], 100.0)} %"
    )
    ablation = results.get("camera_ablation")
    if ablation and ablation["l2_increase"] is not None:
        line += (
            f"; cameras blanked: avg L2 {report.format_value(ablation['stp3_l2_avg_no_cameras'])}"
            f" m ({ablation['l2_increase'] * 100.0:+.1f} %)"
        )
    print(f"{line}; report: {args.out / report.REPORT_FILE}")
    return 0
