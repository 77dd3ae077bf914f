"""Per-voxel classification losses for semantic occupancy: masked cross-entropy, Lovasz-softmax.

Both take flattened voxels (``[N, C]`` scores, ``[N]`` labels, optional ``[N]`` validity) so a
[B, 200, 200, 16, 18] logit volume is used through a view, without a copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Marks voxels that take no part in the cross-entropy (outside the camera mask).
IGNORE_LABEL = -100


def masked_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy over the valid voxels, weighted per class like ``F.cross_entropy``.

    ``logits`` [N, C]; ``labels`` int64 [N]; ``valid`` bool [N] or None (all valid);
    ``class_weights`` [C] or None. The result is sum_i w[y_i] * CE_i / sum_i w[y_i] over valid
    voxels, and 0 (still attached to the graph) when no voxel is valid, instead of NaN.
    """
    targets = labels if valid is None else labels.masked_fill(~valid, IGNORE_LABEL)
    per_voxel = F.cross_entropy(
        logits, targets, weight=class_weights, ignore_index=IGNORE_LABEL, reduction="none"
    )  # [N], 0 where ignored
    counted = (targets != IGNORE_LABEL).to(per_voxel.dtype)  # [N]
    if class_weights is not None:
        counted = counted * class_weights[targets.clamp(min=0)]
    # The tiny floor only matters when nothing is valid: 0 / floor = 0.
    return per_voxel.sum() / counted.sum().clamp(min=torch.finfo(per_voxel.dtype).tiny)


def lovasz_softmax(
    probabilities: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Lovasz-softmax loss (Berman, Triki, Blaschko, CVPR 2018), averaged over present classes.

    ``probabilities`` [N, C] (softmax outputs); ``labels`` int64 [N]; ``valid`` bool [N] or None.
    For each class c present among the valid labels, the errors m_i = |[y_i = c] - p_i(c)| are
    sorted in decreasing order and dotted with the increments of the Jaccard loss
    1 - |gt_c n E_k| / |gt_c u E_k| along that order (E_k: the k largest errors): the Lovasz
    extension of the Jaccard loss at m. On a hard (one-hot) prediction this equals 1 - IoU_c.
    Returns the mean over present classes, or 0 (attached to the graph) when none is valid.
    """
    if valid is not None:
        probabilities, labels = probabilities[valid], labels[valid]  # [M, C], [M]
    present = torch.unique(labels)  # [P]
    if present.numel() == 0:
        return probabilities.sum() * 0.0
    foreground = labels[:, None] == present[None, :]  # bool [M, P]
    errors = (foreground.to(probabilities.dtype) - probabilities.index_select(1, present)).abs()
    # The loss is linear in the errors once their order is fixed: sum_i m_i g_i, where g_i is
    # the Jaccard increment at m_i's place in the order. The order, hence g, carries no
    # gradient, so g is computed without autograd and the loss is one elementwise product
    # (value and gradient equal to dotting the sorted errors with the increments; no sort or
    # gather in the backward pass).
    with torch.no_grad():
        increments = torch.zeros_like(errors)  # [M, P]
        for column, (class_errors, is_foreground) in enumerate(
            zip(errors.t().contiguous(), foreground.t().contiguous(), strict=True)
        ):
            # Once every foreground voxel is passed in the sorted order, the Jaccard loss is 1
            # and stays 1: background voxels whose error is below every foreground error have
            # a zero increment. Leaving them out of the sort changes nothing; for a rare
            # class most of the background is such.
            kept = is_foreground | (class_errors >= class_errors[is_foreground].min())
            kept = kept.nonzero().squeeze(1)  # [K]
            order = kept[torch.sort(class_errors[kept], descending=True).indices]  # [K]
            increments[order, column] = _jaccard_increments(
                is_foreground[order].to(probabilities.dtype)
            )
    return (errors * increments).sum() / present.numel()


def _jaccard_increments(foreground_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss for errors in this sorted order."""
    total = foreground_sorted.sum()
    intersection = total - foreground_sorted.cumsum(0)
    union = total + (1.0 - foreground_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
