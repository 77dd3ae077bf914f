"""A minimal publisher process for the cross-process smoke test.

Usage: python -m tests.support.talker TOPIC [--image]
Publishes std_msgs/String (or a 1600x900 rgb8 sensor_msgs/Image) at 10 Hz until interrupted.
"""

from __future__ import annotations

import sys

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from sensor_msgs.msg import Image
from std_msgs.msg import String


def main() -> None:
    topic = sys.argv[1]
    send_image = "--image" in sys.argv[2:]
    rclpy.init()
    node = rclpy.create_node("smoke_talker")
    publisher = node.create_publisher(Image if send_image else String, topic, 10)
    pixels = bytearray(np.full((900, 1600, 3), 7, dtype=np.uint8))
    count = 0

    def publish() -> None:
        nonlocal count
        count += 1
        if send_image:
            message = Image(height=900, width=1600, encoding="rgb8", step=1600 * 3, data=pixels)
            message.header.frame_id = f"frame {count}"
        else:
            message = String(data=f"hello {count}")
        publisher.publish(message)

    node.create_timer(0.1, publish)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
