"""Meta-actions: the finite vocabulary the VLM answers with, its text form and a strict parser.

A meta-action is one speed action and one direction action, written ``"<speed>, <direction>"``
(for example ``"decelerate, turn left"``). The vocabulary is data so a checkpoint can carry its
own; the default is speed {stop, decelerate, keep speed, accelerate} x direction {go straight,
turn left, turn right, change lane left, change lane right}. The rules that label a ground-truth
future with a meta-action live in ``occvla_ros.data.labels``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from occvla_ros.errors import ConfigError, MetaActionParseError

DEFAULT_SPEED_ACTIONS: tuple[str, ...] = ("stop", "decelerate", "keep speed", "accelerate")
DEFAULT_DIRECTION_ACTIONS: tuple[str, ...] = (
    "go straight",
    "turn left",
    "turn right",
    "change lane left",
    "change lane right",
)
SEPARATOR = ", "


@dataclass(frozen=True)
class MetaAction:
    speed: str
    direction: str

    @property
    def text(self) -> str:
        return f"{self.speed}{SEPARATOR}{self.direction}"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class MetaActionVocabulary:
    """All speed x direction combinations; class index = speed_index * n_directions + direction."""

    speeds: tuple[str, ...] = DEFAULT_SPEED_ACTIONS
    directions: tuple[str, ...] = DEFAULT_DIRECTION_ACTIONS
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "speeds", tuple(self.speeds))
        object.__setattr__(self, "directions", tuple(self.directions))
        for kind, words in (("speed", self.speeds), ("direction", self.directions)):
            if not words:
                raise ConfigError(f"meta-action vocabulary has no {kind} actions")
            if len(set(words)) != len(words):
                raise ConfigError(f"duplicate {kind} actions in meta-action vocabulary: {words}")
            bad = [w for w in words if SEPARATOR.strip() in w or w != w.strip() or not w]
            if bad:
                raise ConfigError(f"{kind} actions must be non-empty and contain no ',': {bad}")
        index = {action.text: i for i, action in enumerate(self.actions)}
        object.__setattr__(self, "_index", index)

    @property
    def actions(self) -> tuple[MetaAction, ...]:
        return tuple(MetaAction(s, d) for s in self.speeds for d in self.directions)

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(action.text for action in self.actions)

    def __len__(self) -> int:
        return len(self.speeds) * len(self.directions)

    def index(self, action: MetaAction) -> int:
        return self._index[action.text]

    def action(self, index: int) -> MetaAction:
        speed, direction = divmod(index, len(self.directions))
        return MetaAction(self.speeds[speed], self.directions[direction])

    def speed_index(self, index: int) -> int:
        return index // len(self.directions)

    def direction_index(self, index: int) -> int:
        return index % len(self.directions)

    def parse(self, text: str) -> MetaAction:
        """Return the meta-action whose text is exactly ``text`` (surrounding blanks ignored)."""
        stripped = text.strip()
        if stripped not in self._index:
            raise MetaActionParseError(
                f"{text!r} is not a meta-action; expected '<speed>, <direction>' with speed in "
                f"{list(self.speeds)} and direction in {list(self.directions)}"
            )
        return self.action(self._index[stripped])

    def to_dict(self) -> dict[str, list[str]]:
        return {"speeds": list(self.speeds), "directions": list(self.directions)}

    @classmethod
    def from_dict(cls, data: dict) -> MetaActionVocabulary:
        return cls(speeds=tuple(data["speeds"]), directions=tuple(data["directions"]))
