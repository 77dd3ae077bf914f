"""A tiny OccVLA fits 4 synthetic keyframes: meta-action, trajectory; occupancy loss falls.

Real data path: the synthetic nuScenes-format dataset, the devkit loader, the stage datasets and
their collate function; real AdamW steps on every stage's loss (``OccVLA.forward``).
"""

from __future__ import annotations

import pytest
import torch

from occvla_ros.model.configuration import OccVLAConfig
from occvla_ros.model.occvla import OccVLA

NUM_KEYFRAMES = 4


def _batch(dataroot, cache_dir, stage: str, image_size: int) -> dict:
    from occvla_ros.data.datasets import KeyframeDataset, collate_keyframes
    from occvla_ros.data.index import load_index

    records = load_index(dataroot, "v1.0-mini", "mini_train", cache_dir=cache_dir).records
    dataset = KeyframeDataset(records, stage, image_size)
    return collate_keyframes([dataset[i] for i in range(NUM_KEYFRAMES)])


def _fit(model: OccVLA, batch: dict, stage: str, steps: int, lr: float) -> list[dict]:
    parameters = model.trainable_parameters(stage)
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    model.train()
    history = []
    for _ in range(steps):
        loss, logs = model(batch, stage)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        history.append(logs)
    return history


@pytest.mark.slow
def test_tiny_model_overfits_four_keyframes(synthetic_dataroot, tmp_path):
    torch.manual_seed(0)
    config = OccVLAConfig.from_preset("tiny")
    model = OccVLA(config)
    batch = _batch(synthetic_dataroot, tmp_path / "index", "occupancy_language", config.image_size)
    assert batch["pixel_values"].shape == (NUM_KEYFRAMES, 6, 3, 112, 112)

    # Stage 2, joint: the occupancy loss falls with the meta-action loss. The tiny preset's
    # frozen decoder is random (no OccWorld weights here), so the occupancy loss falls slowly
    # and a few steps of the (CPU-expensive, 200x200x16) decoder are all the test affords.
    joint = _fit(model, batch, "occupancy_language", steps=5, lr=2e-2)
    occupancy_ce = [logs["occ_ce"] for logs in joint]
    assert occupancy_ce[-1] < occupancy_ce[0] - 0.05, occupancy_ce
    # More meta-action steps without the (slow) occupancy decoder: the text loss alone.
    model.occupancy, occupancy = None, model.occupancy
    text = _fit(model, batch, "occupancy_language", steps=25, lr=1e-2)
    model.occupancy = occupancy
    assert text[-1]["text"] < 0.1 * joint[0]["text"], (joint[0], text[-1])
    # Stage 3: the planning head on the frozen VLM.
    planning = _fit(model, batch, "planning", steps=60, lr=1e-2)
    assert planning[-1]["planning_l1"] < 0.3 * planning[0]["planning_l1"], planning[::20]

    prediction = model.predict(batch["pixel_values"], batch["ego_state"], with_occupancy=True)
    assert torch.equal(prediction.meta_action_indices, batch["meta_action"])
    errors = (prediction.waypoints - batch["trajectory"]).abs()[batch["trajectory_mask"]]
    assert errors.mean() < 0.3 * batch["trajectory"].abs()[batch["trajectory_mask"]].mean()
    assert prediction.occupancy.shape == batch["occupancy"].shape
