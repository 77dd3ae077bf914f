"""Meta-action decoding in one pass: score every candidate of the finite vocabulary.

The prefix (images + prompt) runs once with a KV cache; the cache is repeated for the K
candidates and all K answers ("<speed>, <direction><eos>") run together as one batch of B * K
short causal sequences. A candidate's score is the sum of its tokens' log-probabilities (the
first token's from the prefix's last position); the prediction is the argmax. This equals
comparing the K sequence likelihoods one by one (tests check it) at the cost of one prefill plus
one short batched step, instead of a token-by-token ``generate()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CandidateTable:
    """Every meta-action's answer tokens, right-padded: ids [K, L], mask bool [K, L]."""

    ids: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def build(cls, answers: list[list[int]], pad_id: int) -> CandidateTable:
        length = max(len(tokens) for tokens in answers)
        ids = torch.full((len(answers), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(answers), length), dtype=torch.bool)
        for row, tokens in enumerate(answers):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = True
        return cls(ids, mask)


def candidate_log_likelihoods(
    first_logits: torch.Tensor,
    continuation_logits: torch.Tensor,
    table: CandidateTable,
) -> torch.Tensor:
    """Sum of token log-probs per candidate.

    first_logits [B, V]: next-token logits after the prefix; continuation_logits [B*K, L, V]:
    logits after each candidate token (row b * K + k). Returns [B, K].
    """
    batch, candidates = first_logits.shape[0], table.ids.shape[0]
    ids = table.ids.to(first_logits.device)  # [K, L]
    mask = table.mask.to(first_logits.device)  # [K, L]
    first = torch.log_softmax(first_logits.float(), dim=-1)[:, ids[:, 0]]  # [B, K]
    later = torch.log_softmax(continuation_logits[:, :-1].float(), dim=-1)  # [B*K, L-1, V]
    later_ids = ids[:, 1:].repeat(batch, 1)  # [B*K, L-1]
    later = later.gather(-1, later_ids[..., None])[..., 0].view(batch, candidates, -1)
    later = (later * mask[None, :, 1:]).sum(dim=-1)  # [B, K]
    return first + later
