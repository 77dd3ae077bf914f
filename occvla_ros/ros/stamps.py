"""builtin_interfaces/Time <-> integer nanoseconds, without the heavier conversions module.

Kept apart from :mod:`occvla_ros.ros.conversions` (which imports the runtime and so torch) so
that light processes such as the bag player start in a fraction of a second.
"""

from __future__ import annotations

from builtin_interfaces.msg import Time


def stamp_to_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def ns_to_stamp(stamp_ns: int) -> Time:
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)
