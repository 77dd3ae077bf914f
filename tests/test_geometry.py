from __future__ import annotations

import math

import numpy as np
import pytest

from occvla_ros import geometry


@pytest.mark.parametrize("yaw", [0.0, 0.3, -2.0, math.pi - 1e-6])
def test_yaw_quaternion_round_trip(yaw):
    assert geometry.quat_wxyz_to_yaw(geometry.yaw_to_quat_wxyz(yaw)) == pytest.approx(yaw)


def test_matrix_quaternion_round_trip_on_random_rotations():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q = q if q[0] >= 0 else -q
        back = geometry.matrix_to_quat_wxyz(geometry.quat_wxyz_to_matrix(q))
        np.testing.assert_allclose(back, q, atol=1e-9)


def test_transform_and_inverse():
    transform = geometry.make_transform([1.0, 2.0, 3.0], geometry.yaw_to_quat_wxyz(math.pi / 2))
    # A point 1 m ahead (x) of a frame turned 90 deg left lies 1 m along the parent's +y.
    np.testing.assert_allclose(
        geometry.transform_points(transform, [[1.0, 0.0, 0.0]]), [[1.0, 3.0, 3.0]], atol=1e-12
    )
    identity = transform @ geometry.invert_transform(transform)
    np.testing.assert_allclose(identity, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(
        geometry.transform_points(transform, np.array([[1.0, 0.0]])), [[1.0, 3.0]], atol=1e-12
    )


def test_ros_quaternion_order():
    q = geometry.yaw_to_quat_wxyz(0.5)
    x, y, z, w = geometry.quat_wxyz_to_ros_xyzw(q)
    np.testing.assert_allclose(geometry.ros_xyzw_to_quat_wxyz(x, y, z, w), q)
    assert w == pytest.approx(math.cos(0.25))


def test_wrap_angle():
    assert geometry.wrap_angle(3 * math.pi / 2) == pytest.approx(-math.pi / 2)
