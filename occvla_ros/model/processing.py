"""Prompts, tokenisation and batching of token sequences for the PaliGemma2 backbone.

Sequence layout per sample (PaliGemma's prefix-LM format, all views' placeholders first):

    [<image> x 6N] <bos> prompt "\\n" | answer <eos> <pad>...

``token_type_ids`` are 0 on the prefix (attended bidirectionally) and 1 on the answer; labels are
-100 except on the answer tokens. The prompt states the ego state (speed, longitudinal
acceleration, yaw rate), optionally the navigation command, and the question.

The tiny preset's tokenizer is a byte-level BPE trained here, in-process, on the project's own
vocabulary (meta-actions, numbers, driving QA words): no download, a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from occvla_ros.errors import CheckpointError, ConfigError
from occvla_ros.meta_action import MetaActionVocabulary
from occvla_ros.model.configuration import OccVLAConfig

IGNORE_INDEX = -100
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>"}
TINY_VOCAB_SIZE = 512

# Words the tiny tokenizer should keep whole: prompt template, driving QA, occupancy classes.
_DRIVING_WORDS = (
    "the ego vehicle car truck bus pedestrian bicycle motorcycle barrier traffic cone trailer "
    "construction driveable surface sidewalk terrain vegetation manmade lane road intersection "
    "front back left right behind ahead near far distance meters metres seconds speed slow fast "
    "stop yield wait go straight turn change keep accelerate decelerate brake what should do next "
    "is are there any how many where which why because safe unsafe red green light sign crossing "
    "moving parked stationary object objects of in on at to from with a an and or not no yes "
    "command acceleration yaw rate m/s m/s^2 rad/s question answer describe scene driving action"
)


def format_prompt(
    config: OccVLAConfig,
    ego_state: torch.Tensor | list[float],
    command: str | None = None,
    question: str | None = None,
) -> str:
    """The text after <bos>: ego state, optional command, question (no trailing newline)."""
    speed, acceleration, yaw_rate = (float(v) for v in ego_state)
    parts = [
        f"speed {speed:.1f} m/s, acceleration {acceleration:.1f} m/s^2, "
        f"yaw rate {yaw_rate:.2f} rad/s."
    ]
    if config.prompt.use_command:
        if command is None:
            raise ConfigError("prompt.use_command is set but no driving command was given")
        parts.append(f"command: {command}.")
    parts.append(question if question is not None else config.prompt.question)
    return " ".join(parts)


def _tokenizer_corpus(meta_actions: MetaActionVocabulary) -> list[str]:
    numbers = [f"{sign}{value / 10:.1f}" for sign in ("", "-") for value in range(0, 400, 3)]
    numbers += [f"{sign}{value / 100:.2f}" for sign in ("", "-") for value in range(0, 100)]
    lines = list(meta_actions.texts) * 20 + [_DRIVING_WORDS] * 10 + numbers
    lines.append(format_prompt(OccVLAConfig.from_preset("tiny"), [1.0, 0.0, 0.0], None))
    return lines


def train_tiny_tokenizer(meta_actions: MetaActionVocabulary, vocab_size: int = TINY_VOCAB_SIZE):
    """A byte-level BPE (any text encodes; no <unk>) wrapped as a transformers fast tokenizer.

    Special tokens follow PaliGemma: <pad>=0, <eos>=1, <bos>=2, then <image> after the BPE
    vocabulary; the model's vocabulary is sized from ``len(tokenizer)``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus(meta_actions), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, **SPECIAL_TOKENS)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return tokenizer


def load_tokenizer(directory: str | Path):
    """The tokenizer saved with a checkpoint or shipped with the user's PaliGemma2 weights."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    if (
        not (directory / "tokenizer.json").is_file()
        and not (directory / "tokenizer.model").is_file()
    ):
        raise CheckpointError(f"no tokenizer.json or tokenizer.model in {directory}")
    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load the tokenizer in {directory}: {error}") from error


@dataclass
class TokenBatch:
    """Right-padded training sequences (or left-padded prompts for inference), [B, T] each."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None = None

    def to(self, device: torch.device) -> TokenBatch:
        moved = {
            name: None if value is None else value.to(device) for name, value in vars(self).items()
        }
        return TokenBatch(**moved)


class PromptProcessor:
    """Turns (ego state, command, question, answer) into PaliGemma token sequences."""

    def __init__(self, config: OccVLAConfig, tokenizer, image_token_id: int) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.image_token_id = image_token_id
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        if None in (self.bos_id, self.eos_id, self.pad_id):
            raise ConfigError("the tokenizer must define <bos>, <eos> and <pad> tokens")

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prefix_ids(self, prompt: str) -> list[int]:
        """[<image> x 6N] <bos> prompt \\n"""
        image = [self.image_token_id] * self.config.num_image_tokens
        return [*image, self.bos_id, *self._encode(prompt + "\n")]

    def answer_ids(self, answer: str) -> list[int]:
        """answer <eos>: the tokens the language-model loss supervises."""
        return [*self._encode(answer), self.eos_id]

    def training_batch(self, prompts: list[str], answers: list[str]) -> TokenBatch:
        """Right-padded prefix + answer sequences with labels on the answers only."""
        rows = []
        for prompt, answer in zip(prompts, answers, strict=True):
            prefix, suffix = self.prefix_ids(prompt), self.answer_ids(answer)
            text_tokens = len(prefix) + len(suffix) - self.config.num_image_tokens
            if text_tokens > self.config.prompt.max_text_tokens:
                raise ConfigError(
                    f"prompt + answer need {text_tokens} text tokens, more than "
                    f"prompt.max_text_tokens={self.config.prompt.max_text_tokens}: "
                    f"text tokens: {prompt!r} | {answer!r}"
                )
            rows.append((prefix, suffix))
        length = max(len(p) + len(s) for p, s in rows)
        batch = len(rows)
        input_ids = torch.full((batch, length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        token_type_ids = torch.ones((batch, length), dtype=torch.long)
        labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
        for row, (prefix, suffix) in enumerate(rows):
            total = len(prefix) + len(suffix)
            input_ids[row, :total] = torch.tensor(prefix + suffix)
            attention_mask[row, :total] = 1
            token_type_ids[row, : len(prefix)] = 0
            labels[row, len(prefix) : total] = torch.tensor(suffix)
        position_ids = torch.arange(1, length + 1).expand(batch, -1).clone()
        return TokenBatch(input_ids, attention_mask, token_type_ids, position_ids, labels)

    def prompt_batch(self, prompts: list[str]) -> TokenBatch:
        """Left-padded prefixes, so every row's next token goes at the same position.

        PaliGemma positions are 1-based and count only real tokens (explicit position_ids).
        """
        prefixes = [self.prefix_ids(prompt) for prompt in prompts]
        length = max(len(p) for p in prefixes)
        batch = len(prefixes)
        input_ids = torch.full((batch, length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        for row, prefix in enumerate(prefixes):
            input_ids[row, length - len(prefix) :] = torch.tensor(prefix)
            attention_mask[row, length - len(prefix) :] = 1
        position_ids = (attention_mask.cumsum(dim=1)).clamp(min=1)
        token_type_ids = torch.zeros_like(input_ids)
        return TokenBatch(input_ids, attention_mask, token_type_ids, position_ids)
