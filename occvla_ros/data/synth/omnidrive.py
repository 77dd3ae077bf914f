"""OmniDrive-format language annotations of a keyframe, derived from the world's ground truth.

Answers are facts of the simulated world at the keyframe (agents in the ego frame, the lead
vehicle, the road ahead) and of the ego's future (the 3 s planning trajectory, its meta-action).
The meta-action comes from the project's labelling rules (``occvla_ros.data.labels``), applied to
the same future trajectory, so QA and training labels always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from occvla_ros.constants import NUM_WAYPOINTS, WAYPOINT_DT_S
from occvla_ros.data.labels import label_meta_action
from occvla_ros.data.synth.world import World
from occvla_ros.geometry import wrap_angle
from occvla_ros.meta_action import MetaAction

PLANNING_QUESTION = "Please provide the planning trajectory for the ego car without reasons."
META_ACTION_QUESTION = "What is the next meta-action of the ego car?"
NEARBY_RADIUS_M = 30.0
# Bearing sectors [deg] named after the camera that covers them.
_SECTORS = (
    (-32, 32, "front"),
    (32, 90, "front-left"),
    (90, 145, "back-left"),
    (-90, -32, "front-right"),
    (-145, -90, "back-right"),
)
_CATEGORY_WORDS = {
    "vehicle.car": "car",
    "vehicle.truck": "truck",
    "vehicle.bus.rigid": "bus",
    "human.pedestrian.adult": "pedestrian",
    "movable_object.trafficcone": "traffic cone",
    "movable_object.barrier": "barrier",
}


@dataclass(frozen=True)
class AgentFact:
    category: str
    x: float  # ego frame, forward
    y: float  # ego frame, left
    speed: float
    heading: float  # relative to the ego's heading [rad]

    @property
    def word(self) -> str:
        return _CATEGORY_WORDS.get(self.category, self.category.split(".")[-1])

    @property
    def distance(self) -> float:
        return math.hypot(self.x, self.y)

    @property
    def direction(self) -> str:
        """Where it is, named after the camera that sees that bearing."""
        bearing = math.degrees(math.atan2(self.y, self.x))
        for low, high, name in _SECTORS:
            if low <= bearing <= high:
                return name
        return "back"


@dataclass(frozen=True)
class KeyframeFacts:
    speed: float  # m/s
    accel: float  # m/s^2
    future_xy: np.ndarray  # [6, 2] ego frame, 0.5 s apart
    future_mask: np.ndarray  # [6] bool: the waypoint lies within the scene (a prefix)
    agents: tuple[AgentFact, ...]
    lead: AgentFact | None
    lead_braking: bool
    intersection: tuple[float, str] | None  # (distance to the stop line, route turn)
    lane_change: str | None  # "left" | "right" when one is under way or starts within 3 s
    stopped_at_line: bool
    pedestrian_ahead: AgentFact | None  # a pedestrian on the ego's path within 12 m
    control: str | None  # the next intersection's "red light" | "green light" | "stop sign"


def planning_answer(future_xy: np.ndarray) -> str:
    points = ", ".join(f"({x:+.2f}, {y:+.2f})" for x, y in future_xy)
    return f"Here is the planning trajectory [PT, {points}]."


def keyframe_facts(world: World, t: float, scene_end_s: float) -> KeyframeFacts:
    """Everything the language annotations of the keyframe at ``t`` say, from the world.

    Waypoints after ``scene_end_s`` (the last keyframe) are masked, as a loader reading the
    scene's ego poses sees them.
    """
    x, y, yaw = world.ego_pose(t)
    cos, sin = math.cos(yaw), math.sin(yaw)
    future = []
    for step in range(1, NUM_WAYPOINTS + 1):
        fx, fy, _ = world.ego_pose(t + step * WAYPOINT_DT_S)
        dx, dy = fx - x, fy - y
        future.append((cos * dx + sin * dy, -sin * dx + cos * dy))
    states = world.agent_states(t)
    agents = []
    for index, agent in enumerate(world.agents):
        if not states["active"][index]:
            continue
        dx, dy = states["x"][index] - x, states["y"][index] - y
        local = AgentFact(
            agent.category,
            cos * dx + sin * dy,
            -sin * dx + cos * dy,
            float(states["speed"][index]),
            float(wrap_angle(states["yaw"][index] - yaw)),
        )
        if local.distance <= 50.0:
            agents.append(local)
    agents.sort(key=lambda a: a.distance)
    lead = next(
        (
            a
            for a in agents
            if a.category.startswith("vehicle.")
            and 0 < a.x < 50
            and abs(a.y) < 1.8
            and abs(a.heading) < math.radians(45)
        ),
        None,
    )
    lead_braking = False
    if lead is not None and world.lead_index is not None:
        k = min(round(t / (world.times[1] - world.times[0])), len(world.times) - 2)
        speeds = world.agents[world.lead_index].speed
        lead_braking = bool(speeds[k + 1] < speeds[k] - 0.02 and speeds[k] > 0.1)
    s_now = float(np.interp(t, world.times, world.ego.s))
    ahead = world.route.intersection_ahead(s_now, 60.0)
    intersection = None
    if ahead is not None:
        intersection = (max(0.0, ahead.s_stop_line - s_now), ahead.turn)
    lane_change = None
    for start, from_d, to_d in world.ego.lane_changes:
        if start - 3.0 <= t <= start + 4.0:
            lane_change = "left" if to_d > from_d else "right"
    stopped = any(
        start - 0.5 <= t <= end and kind in ("red light", "stop sign")
        for start, end, kind in world.ego.holds
    )
    control = None
    if ahead is not None:
        found = next(c for c in world.controls if c.intersection is ahead)
        control = found.kind if found.kind == "stop sign" else "red light"
        if found.kind == "light" and not found.red(t):
            control = "green light"
    k = min(round(t / (world.times[1] - world.times[0])), len(world.times) - 1)
    return KeyframeFacts(
        speed=world.ego_speed(t),
        accel=float(world.ego.accel[k]),
        future_xy=np.array(future),
        future_mask=t + WAYPOINT_DT_S * np.arange(1, NUM_WAYPOINTS + 1) <= scene_end_s + 1e-6,
        agents=tuple(agents),
        lead=lead,
        lead_braking=lead_braking,
        intersection=intersection,
        lane_change=lane_change,
        stopped_at_line=stopped,
        control=control,
        pedestrian_ahead=next(
            (
                a
                for a in agents
                if a.category.startswith("human.") and 0 < a.x < 12 and abs(a.y) < 4.0
            ),
            None,
        ),
    )


def reason(facts: KeyframeFacts, action: MetaAction) -> str:
    """Why the ego takes ``action``, from the situation the facts describe."""
    lead = facts.lead
    parts = []
    if action.speed in ("stop", "decelerate"):
        if facts.pedestrian_ahead is not None:
            parts.append("a pedestrian is crossing in front of it")
        elif lead is not None and lead.x < 30 and (lead.speed < 0.5 or facts.lead_braking):
            parts.append(f"the {lead.word} ahead is {'stopped' if lead.speed < 0.5 else 'braking'}")
        elif facts.control == "red light":
            parts.append("the traffic light ahead is red")
        elif facts.control == "stop sign":
            parts.append("there is a stop sign at the intersection ahead")
        elif action.direction.startswith("turn"):
            parts.append("the turn ahead needs a lower speed")
        else:
            parts.append("the desired speed is lower")
    elif action.speed == "accelerate":
        parts.append(
            "the road ahead is clear"
            if lead is None or lead.x > 25
            else f"the {lead.word} ahead is pulling away"
        )
    else:
        parts.append("traffic ahead is flowing steadily")
    if action.direction.startswith("turn") and facts.intersection is not None:
        parts.append(f"the route turns {facts.intersection[1]} at the intersection")
    elif action.direction.startswith("turn"):
        parts.append(f"the road curves to the {action.direction.split()[-1]}")
    elif action.direction.startswith("change lane"):
        side = action.direction.split()[-1]
        if facts.intersection is not None and facts.intersection[1] != "straight":
            parts.append(f"it moves to the {side} lane to turn {facts.intersection[1]} later")
        else:
            parts.append(f"it moves to the {side} lane")
    return " and ".join(parts)


def meta_action(facts: KeyframeFacts) -> MetaAction | None:
    """The keyframe's meta-action by the project's labelling rules (None without a future)."""
    if not facts.future_mask.any():
        return None
    return label_meta_action(facts.future_xy, facts.future_mask, facts.speed)


def build_annotations(facts: KeyframeFacts) -> tuple[list[dict], dict, list[str]]:
    """(vqa list of {question, answer}, desc {description, action}, keywords).

    The planning answer needs the whole 3 s future inside the scene; the meta-action needs one
    waypoint of it.
    """
    action = meta_action(facts)
    vehicles = [a for a in facts.agents if a.category.startswith("vehicle.")]
    pedestrians = [a for a in facts.agents if a.category.startswith("human.")]
    near_vehicles = [a for a in vehicles if a.distance <= NEARBY_RADIUS_M]
    near_pedestrians = [a for a in pedestrians if a.distance <= NEARBY_RADIUS_M]
    vqa = []
    if facts.future_mask.all():
        vqa.append({"question": PLANNING_QUESTION, "answer": planning_answer(facts.future_xy)})
    vqa += [
        {
            "question": "What is the current speed of the ego car?",
            "answer": f"The ego car is driving at {facts.speed:.1f} m/s."
            if facts.speed > 0.1
            else "The ego car is stopped.",
        },
        {
            "question": f"How many vehicles are within {NEARBY_RADIUS_M:.0f} meters of the "
            "ego car?",
            "answer": _count(len(near_vehicles), "vehicle"),
        },
        {
            "question": f"How many pedestrians are within {NEARBY_RADIUS_M:.0f} meters of the "
            "ego car?",
            "answer": _count(len(near_pedestrians), "pedestrian"),
        },
        {
            "question": "Is there a vehicle ahead of the ego car in its lane?",
            "answer": _lead_answer(facts),
        },
        {
            "question": "What are the important objects around the ego car?",
            "answer": _objects_answer(facts.agents),
        },
        {"question": "What does the road ahead look like?", "answer": _road_answer(facts)},
    ]
    action_text = ""
    if action is not None:
        why = reason(facts, action)
        vqa.append({"question": META_ACTION_QUESTION, "answer": action.text})
        vqa.append(
            {
                "question": "What should the ego car do next and why?",
                "answer": f"The ego car should {action.text} because {why}.",
            }
        )
        action_text = f"The ego car will {action.text} because {why}."
    lead = _lead_answer(facts).removeprefix("Yes, a ").removeprefix("No, the ")
    description = " ".join([_road_answer(facts), f"The {lead}", _objects_answer(facts.agents)])
    keywords = sorted({a.word for a in facts.agents if a.distance <= NEARBY_RADIUS_M})
    if facts.intersection is not None:
        keywords.append("intersection")
    if facts.lead is not None:
        keywords.append("lead vehicle")
    return vqa, {"description": description, "action": action_text}, keywords


def _count(count: int, word: str) -> str:
    if count == 0:
        return f"There are no {word}s."
    return f"There {'is' if count == 1 else 'are'} {count} {word}{'' if count == 1 else 's'}."


def _lead_answer(facts: KeyframeFacts) -> str:
    lead = facts.lead
    if lead is None:
        return "No, the lane ahead is clear for at least 50 meters."
    motion = "stopped" if lead.speed < 0.5 else f"moving at {lead.speed:.1f} m/s"
    if facts.lead_braking and lead.speed >= 0.5:
        motion += " and braking"
    return f"Yes, a {lead.word} is {lead.x:.1f} meters ahead, {motion}."


def _objects_answer(agents: tuple[AgentFact, ...]) -> str:
    if not agents:
        return "There are no other road users nearby."
    described = []
    for agent in agents[:5]:
        state = "stationary" if agent.speed < 0.3 else f"moving at {agent.speed:.1f} m/s"
        described.append(
            f"a {agent.word} {agent.distance:.1f} meters to the {agent.direction} "
            f"(x {agent.x:+.1f}, y {agent.y:+.1f}), {state}"
        )
    return "Nearby there is " + "; ".join(described) + "."


def _road_answer(facts: KeyframeFacts) -> str:
    if facts.intersection is None:
        text = "The road ahead continues without an intersection for the next 60 meters."
    else:
        distance, turn = facts.intersection
        route = "goes straight through it" if turn == "straight" else f"turns {turn} there"
        text = f"There is an intersection {distance:.0f} meters ahead; the route {route}."
        if facts.control == "stop sign":
            text += " It has a stop sign."
        elif facts.control is not None:
            text += f" Its traffic light is {facts.control.split()[0]}."
    if facts.stopped_at_line:
        text += " The ego car is waiting at the stop line."
    return text
