"""The evaluation result file (JSON) and its Markdown report.

Every planning table names its convention, its sample set and count, and whether ego status and
driving commands were model inputs; the ego-only baselines sit beside the model in every table,
and the published numbers of the same convention follow for context.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from occvla_ros.evaluation.planning import TABLE_COLUMNS

RESULT_FILE = "results.json"
REPORT_FILE = "report.md"

# Published open-loop numbers on nuScenes val (docs/evaluation.md gives the sources):
# (method, inputs, L2 m 1s/2s/3s/avg, collision % 1s/2s/3s/avg or None).
PUBLISHED: dict[str, list[tuple[str, str, tuple, tuple | None]]] = {
    "stp3": [
        ("VAD-Base", "cameras", (0.41, 0.70, 1.05, 0.72), (0.07, 0.17, 0.41, 0.22)),
        (
            "AD-MLP",
            "ego status + history + command",
            (0.20, 0.26, 0.41, 0.29),
            (0.17, 0.18, 0.24, 0.19),
        ),
        ("DriveVLM-Dual", "cameras + ego", (0.15, 0.29, 0.48, 0.31), (0.05, 0.08, 0.17, 0.10)),
        ("EMMA", "cameras + ego", (0.14, 0.29, 0.54, 0.32), None),
        ("EMMA+", "cameras + ego", (0.13, 0.27, 0.48, 0.29), None),
        ("OpenDriveVLA-3B", "cameras + ego", (0.14, 0.30, 0.55, 0.33), (0.02, 0.07, 0.22, 0.10)),
        (
            "OccVLA (paper, convention most likely ST-P3)",
            "cameras + ego",
            (None, None, None, 0.28),
            None,
        ),
    ],
    "uniad": [
        ("UniAD", "cameras + CAN bus in BEV", (0.48, 0.96, 1.65, 1.03), (0.05, 0.17, 0.71, 0.31)),
        ("OpenDriveVLA-3B", "cameras + ego", (0.19, 0.58, 1.24, 0.67), (0.02, 0.18, 0.70, 0.30)),
    ],
    "omnidrive": [
        ("OmniDrive++", "cameras + ego", (0.14, 0.29, 0.55, 0.33), (0.00, 0.13, 0.78, 0.30)),
    ],
}

METHOD_LABELS = {
    "model": "OccVLA (this checkpoint)",
    "model_no_cameras": "OccVLA, all six cameras blanked",
    "ego_mlp": "Ego-status MLP (ego state + past trajectory)",
    "ego_command_mlp": "Ego+command MLP (ego state + past trajectory + driving command)",
    "constant_velocity": "Constant velocity (ego speed)",
}


def write_json(results: dict, out_dir: Path) -> Path:
    path = out_dir / RESULT_FILE
    path.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    return path


def format_value(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value * scale:.{digits}f}"


def _planning_section(name: str, per_method: dict[str, dict], inputs: dict) -> list[str]:
    first = next(iter(per_method.values()))
    lines = [
        f"### {name} convention",
        "",
        f"{first['description']}.",
        "",
        f"Samples: {first['sample_count']} ({first['sample_set']} set). Model inputs: cameras, "
        f"ego status {'yes' if inputs['ego_status'] else 'no'}, "
        f"driving command {'yes (leaks the future)' if inputs['command'] else 'no'}.",
        "",
        "| method | "
        + " | ".join(f"L2 {c} (m)" for c in TABLE_COLUMNS)
        + " | "
        + " | ".join(f"Col. {c} (%)" for c in TABLE_COLUMNS)
        + " |",
        "|---" * (1 + 2 * len(TABLE_COLUMNS)) + "|",
    ]
    for method, result in per_method.items():
        l2 = [format_value(result["table"]["l2"][c]) for c in TABLE_COLUMNS]
        col = [format_value(result["table"]["collision"][c], 100.0) for c in TABLE_COLUMNS]
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(l2 + col) + " |")
    published = PUBLISHED.get(name.partition("[")[0], [])
    if published:
        lines += [
            "",
            f"Published on nuScenes val, {name} convention (for context, not this data):",
            "",
        ]
        lines += [
            "| method | inputs | "
            + " | ".join(f"L2 {c}" for c in TABLE_COLUMNS)
            + " | "
            + " | ".join(f"Col. {c} %" for c in TABLE_COLUMNS)
            + " |",
            "|---" * (2 + 2 * len(TABLE_COLUMNS)) + "|",
        ]
        for method, used, l2, col in published:
            cells = [format_value(v) for v in l2] + [format_value(v) for v in (col or (None,) * 4)]
            lines.append(f"| {method} | {used} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _per_step_section(results: dict) -> list[str]:
    lines = ["### Per-step values (every 0.5 s horizon)", ""]
    for method, conventions in results["planning"].items():
        for name, result in conventions.items():
            l2 = ", ".join(format_value(v) for v in result["per_step"]["l2"])
            col = ", ".join(format_value(v, 100.0) for v in result["per_step"]["collision"])
            lines.append(
                f"- {METHOD_LABELS.get(method, method)}, {name}: L2 [{l2}] m; collision [{col}] %"
            )
    return [*lines, ""]


def _camera_ablation_section(ablation: dict | None) -> list[str]:
    if not ablation:
        return []
    increase = ablation["l2_increase"]
    return [
        "## Vision ablation",
        "",
        f"The same checkpoint with {ablation['blanking']}: ST-P3 avg L2 "
        f"{format_value(ablation['stp3_l2_avg'])} m with the cameras, "
        f"{format_value(ablation['stp3_l2_avg_no_cameras'])} m without "
        f"({'n/a' if increase is None else f'{increase * 100.0:+.1f} %'}); meta-action joint "
        f"accuracy without the cameras "
        f"{format_value(ablation['meta_action_joint_accuracy_no_cameras'], 100.0, 1)} %.",
        "",
    ]


def _situation_section(situations: dict) -> list[str]:
    if not situations:
        return []
    methods = list(next(iter(situations.values()))["planning"])
    lines = [
        "## Per situation (ST-P3 avg L2 m / avg collision %)",
        "",
        "| situation | samples | " + " | ".join(METHOD_LABELS.get(m, m) for m in methods) + " |",
        "|---" * (2 + len(methods)) + "|",
    ]
    for situation, entry in situations.items():
        cells = [
            f"{format_value(t['l2']['avg'])} / {format_value(t['collision']['avg'], 100.0)}"
            for t in entry["planning"].values()
        ]
        lines.append(f"| {situation} | {entry['samples']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def render_markdown(results: dict, figures: dict[str, str]) -> str:
    inputs = results["inputs"]
    skipped = results.get("skipped_samples", 0)
    lines = [
        "# OccVLA evaluation report",
        "",
        f"- checkpoint: `{results['checkpoint']}`",
        f"- data: `{results['dataroot']}` {results['version']} split `{results['split']}`, "
        f"{results['sample_count']} keyframes evaluated"
        + (f", {skipped} skipped (unreadable input, see the log)" if skipped else ""),
        f"- model inputs: 6 cameras; ego status {'yes' if inputs['ego_status'] else 'no'}; "
        f"driving command {'yes' if inputs['command'] else 'no'}",
        f"- baselines use ego status only (no cameras): {', '.join(results['baselines'])}",
        "",
        "## Open-loop planning",
        "",
        "Collision excludes steps where the ground truth itself collides (numerator only). "
        "Tables are comparable only within one convention.",
        "",
    ]
    by_convention: dict[str, dict[str, dict]] = {}
    for method, conventions in results["planning"].items():
        for name, result in conventions.items():
            by_convention.setdefault(name, {})[method] = result
    for name, per_method in by_convention.items():
        lines += _planning_section(name, per_method, inputs)
    lines += _per_step_section(results)
    meta = results.get("meta_action")
    if meta and meta["count"]:
        lines += [
            "## Meta-action",
            "",
            f"{meta['count']} samples: joint accuracy "
            f"{format_value(meta['joint_accuracy'], 100.0, 1)} %, "
            f"speed {format_value(meta['speed_accuracy'], 100.0, 1)} %, "
            f"direction {format_value(meta['direction_accuracy'], 100.0, 1)} %.",
            "",
        ]
    lines += _camera_ablation_section(results.get("camera_ablation"))
    lines += _situation_section(results.get("situations") or {})
    qa = results.get("qa")
    if qa:
        lines += [
            "## Driving QA (OmniDrive)",
            "",
            f"Closed-form answers (numbers, yes/no, meta-actions): {qa['closed_form_count']}, "
            f"exact match {format_value(qa['exact_match_accuracy'], 100.0, 1)} %. "
            f"Free-text answers: "
            f"{qa['free_text_count']}, ROUGE-L F (beta {qa['rouge_l_beta']}) "
            f"{format_value(qa['rouge_l'], 100.0, 1)} %.",
            "",
        ]
    occupancy = results.get("occupancy")
    if occupancy:
        mask = "voxels with mask_camera == 1" if occupancy["use_camera_mask"] else "all voxels"
        lines += [
            "## Occupancy (Occ3D protocol)",
            "",
            f"Over {occupancy['voxel_count']} {mask}: "
            f"mIoU {format_value(occupancy['miou'], 100.0)} % "
            f"(classes 0..16; classes absent from both GT and prediction are n/a and excluded), "
            f"geometry IoU {format_value(occupancy['geometry_iou'], 100.0)} %.",
            "",
            "| class | IoU (%) |",
            "|---|---|",
        ]
        lines += [
            f"| {k} | {format_value(v, 100.0)} |" for k, v in occupancy["per_class_iou"].items()
        ]
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{title}]({path})" for title, path in figures.items()]
        lines.append("")
    return "\n".join(lines)


def write_markdown(results: dict, figures: dict[str, str], out_dir: Path) -> Path:
    path = out_dir / REPORT_FILE
    path.write_text(render_markdown(results, figures))
    return path
