"""nuScenes tables (full official schema) built record by record and written as JSON.

Tokens are 32 hex digits derived from the dataset seed and the record's identity, so a dataset
is reproducible byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

TABLE_NAMES = (
    "attribute",
    "calibrated_sensor",
    "category",
    "ego_pose",
    "instance",
    "log",
    "map",
    "sample",
    "sample_annotation",
    "sample_data",
    "scene",
    "sensor",
    "visibility",
)

# The nuScenes v1.0 category taxonomy (name, short description), in its official index order.
CATEGORIES = (
    ("human.pedestrian.adult", "Adult subcategory."),
    ("human.pedestrian.child", "Child subcategory."),
    ("human.pedestrian.wheelchair", "Wheelchairs."),
    ("human.pedestrian.stroller", "Strollers."),
    ("human.pedestrian.personal_mobility", "Small electric or self-propelled vehicles."),
    ("human.pedestrian.police_officer", "Police officer."),
    ("human.pedestrian.construction_worker", "Construction worker."),
    ("animal", "All animals."),
    ("vehicle.car", "Vehicle designed primarily for personal use."),
    ("vehicle.motorcycle", "Gasoline or electric powered 2-wheeled vehicle."),
    ("vehicle.bicycle", "Human or electric powered 2-wheeled vehicle."),
    ("vehicle.bus.bendy", "Bendy bus subcategory."),
    ("vehicle.bus.rigid", "Rigid bus subcategory."),
    ("vehicle.truck", "Vehicles primarily designed to haul cargo."),
    ("vehicle.construction", "Vehicles primarily designed for construction."),
    ("vehicle.emergency.ambulance", "All types of ambulances."),
    ("vehicle.emergency.police", "All types of police vehicles."),
    ("vehicle.trailer", "Any vehicle trailer."),
    ("movable_object.barrier", "Temporary road barrier placed in the scene."),
    ("movable_object.trafficcone", "All types of traffic cones."),
    ("movable_object.pushable_pullable", "Objects that a pedestrian may push or pull."),
    ("movable_object.debris", "Movable object that is left on the driveable surface."),
    ("static_object.bicycle_rack", "Area or device intended to park or secure bicycles."),
)
ATTRIBUTES = (
    ("vehicle.moving", "Vehicle is moving."),
    ("vehicle.stopped", "Vehicle, with a driver/rider in/on it, is currently stationary."),
    ("vehicle.parked", "Vehicle is stationary and its driver/rider is not in/on it."),
    ("cycle.with_rider", "There is someone on the bicycle or motorcycle."),
    ("cycle.without_rider", "There is nobody on the bicycle or motorcycle."),
    ("pedestrian.sitting_lying_down", "The pedestrian is sitting or lying down."),
    ("pedestrian.standing", "The pedestrian is standing."),
    ("pedestrian.moving", "The pedestrian is moving."),
)
VISIBILITIES = (
    ("1", "v0-40", "visibility of whole object is between 0 and 40%"),
    ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
    ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
    ("4", "v80-100", "visibility of whole object is between 80 and 100%"),
)


def visibility_token(fraction: float) -> str:
    """nuScenes visibility bin ("1".."4") of the visible fraction of an object."""
    for token, upper in (("1", 0.4), ("2", 0.6), ("3", 0.8)):
        if fraction < upper:
            return token
    return "4"


class NuScenesTables:
    """Accumulates records; ``link_chains`` fills prev/next; ``write`` saves the 13 tables."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.tables: dict[str, list[dict]] = {name: [] for name in TABLE_NAMES}
        for index, (name, description) in enumerate(CATEGORIES):
            self.add(
                "category",
                self.token("category", name),
                name=name,
                description=description,
                index=index,
            )
        for name, description in ATTRIBUTES:
            self.add("attribute", self.token("attribute", name), name=name, description=description)
        for token, level, description in VISIBILITIES:
            self.add("visibility", token, level=level, description=description)

    def token(self, *identity: object) -> str:
        text = "/".join(str(part) for part in (self.seed, *identity))
        return hashlib.md5(text.encode()).hexdigest()

    def add(self, table: str, token: str, **fields: object) -> dict:
        record = {"token": token, **fields}
        self.tables[table].append(record)
        return record

    def category_token(self, name: str) -> str:
        return self.token("category", name)

    def attribute_token(self, name: str) -> str:
        return self.token("attribute", name)

    def link_chain(self, records: list[dict]) -> None:
        """Set prev/next of ``records`` (already in time order)."""
        for index, record in enumerate(records):
            record["prev"] = records[index - 1]["token"] if index > 0 else ""
            record["next"] = records[index + 1]["token"] if index + 1 < len(records) else ""

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, records in self.tables.items():
            with open(directory / f"{name}.json", "w", encoding="utf-8") as handle:
                json.dump(records, handle, indent=0)
