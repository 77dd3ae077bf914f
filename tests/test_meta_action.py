from __future__ import annotations

import pytest

from occvla_ros.errors import ConfigError, MetaActionParseError
from occvla_ros.meta_action import MetaAction, MetaActionVocabulary


def test_default_vocabulary_is_speed_times_direction():
    vocabulary = MetaActionVocabulary()
    assert len(vocabulary) == 4 * 5 == len(set(vocabulary.texts))
    assert vocabulary.texts[0] == "stop, go straight"


def test_render_parse_and_index_round_trip():
    vocabulary = MetaActionVocabulary()
    for index, action in enumerate(vocabulary.actions):
        assert vocabulary.parse(action.text) == action
        assert vocabulary.index(action) == index
        assert vocabulary.action(index) == action
        assert vocabulary.speeds[vocabulary.speed_index(index)] == action.speed
        assert vocabulary.directions[vocabulary.direction_index(index)] == action.direction


@pytest.mark.parametrize(
    "text",
    [
        "",
        "decelerate",
        "turn left, decelerate",
        "decelerate,turn left",
        "Decelerate, turn left",
        "decelerate, turn left, now",
        "fly, turn left",
    ],
)
def test_parser_is_strict(text):
    with pytest.raises(MetaActionParseError):
        MetaActionVocabulary().parse(text)


def test_parser_ignores_surrounding_blanks_only():
    assert MetaActionVocabulary().parse("  keep speed, turn right\n") == MetaAction(
        "keep speed", "turn right"
    )


def test_vocabulary_round_trips_through_a_dict():
    vocabulary = MetaActionVocabulary(speeds=("slow", "fast"), directions=("left", "right"))
    assert MetaActionVocabulary.from_dict(vocabulary.to_dict()) == vocabulary


@pytest.mark.parametrize(
    ("speeds", "directions"), [((), ("left",)), (("a", "a"), ("left",)), (("a,b",), ("left",))]
)
def test_invalid_vocabularies_are_rejected(speeds, directions):
    with pytest.raises(ConfigError):
        MetaActionVocabulary(speeds=speeds, directions=directions)
