"""Driving-QA scores: exact match for closed-form answers, ROUGE-L for free text.

An answer is closed-form when the reference is a number, "yes"/"no", or a meta-action of the
vocabulary; those are scored by exact match after normalisation (case, surrounding punctuation and
blanks; numbers compared as values, so "3" matches "3.0"). Every other answer is free text and
scored by ROUGE-L (Lin, 2004): with LCS the longest common subsequence of the whitespace tokens of
the lower-cased, punctuation-stripped texts, R = LCS / len(reference), P = LCS / len(candidate),
F = (1 + beta^2) P R / (R + beta^2 P) with beta = 1.2 (the value of the COCO caption evaluation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from occvla_ros.errors import ConfigError
from occvla_ros.meta_action import MetaActionVocabulary

ROUGE_BETA = 1.2
_PUNCTUATION = re.compile(r"[^\w\s.,-]|(?<!\d)[.,]|[.,](?!\d)")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def normalise(text: str) -> str:
    """Lower case, punctuation removed (decimal points kept), blanks collapsed."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def tokens(text: str) -> list[str]:
    return normalise(text).split()


def lcs_length(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programme, one row at a time)."""
    if not first or not second:
        return 0
    previous = [0] * (len(second) + 1)
    for a in first:
        current = [0]
        for j, b in enumerate(second):
            current.append(previous[j] + 1 if a == b else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str, beta: float = ROUGE_BETA) -> float:
    """ROUGE-L F-measure in [0, 1] of one candidate against one reference."""
    candidate_tokens, reference_tokens = tokens(candidate), tokens(reference)
    common = lcs_length(candidate_tokens, reference_tokens)
    if common == 0:
        return 0.0
    precision = common / len(candidate_tokens)
    recall = common / len(reference_tokens)
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


class QAMetric:
    """Accumulator of QA scores: exact match on closed-form answers, mean ROUGE-L on the rest.

    See the module docstring for what counts as closed-form and the exact ROUGE-L definition.
    """

    def __init__(self, vocabulary: MetaActionVocabulary | None = None) -> None:
        vocabulary = vocabulary or MetaActionVocabulary()
        self._meta_actions = {normalise(text) for text in vocabulary.texts}
        self.reset()

    def reset(self) -> None:
        self.exact: list[bool] = []
        self.rouge: list[float] = []

    def is_closed_form(self, reference: str) -> bool:
        answer = normalise(reference)
        return (
            answer in {"yes", "no"} or bool(_NUMBER.match(answer)) or answer in self._meta_actions
        )

    @staticmethod
    def exact_match(candidate: str, reference: str) -> bool:
        first, second = normalise(candidate), normalise(reference)
        if _NUMBER.match(first) and _NUMBER.match(second):
            return float(first) == float(second)
        return first == second

    def update(self, candidates: Sequence[str], references: Sequence[str]) -> None:
        if len(candidates) != len(references):
            raise ConfigError(f"{len(candidates)} answers for {len(references)} references")
        for candidate, reference in zip(candidates, references, strict=True):
            if self.is_closed_form(reference):
                self.exact.append(self.exact_match(candidate, reference))
            else:
                self.rouge.append(rouge_l(candidate, reference))

    def compute(self) -> dict:
        return {
            "closed_form_count": len(self.exact),
            "exact_match_accuracy": float(np.mean(self.exact)) if self.exact else None,
            "free_text_count": len(self.rouge),
            "rouge_l": float(np.mean(self.rouge)) if self.rouge else None,
            "rouge_l_beta": ROUGE_BETA,
        }
