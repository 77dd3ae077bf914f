"""Names, class ids, grids and frame conventions shared by every part of the project.

Sources: the nuScenes devkit (camera channels, frames), Occ3D-nuScenes (voxel grid and the 18
semantic labels), and the open-loop planning convention of 6 waypoints at 0.5 s.
"""

# nuScenes camera channels in the fixed order the model's camera slots use.
CAMERA_NAMES: tuple[str, ...] = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)
NUM_CAMERAS = len(CAMERA_NAMES)
LIDAR_NAME = "LIDAR_TOP"
NUSCENES_IMAGE_SIZE = (1600, 900)  # width, height
KEYFRAME_HZ = 2.0
CAMERA_SWEEP_HZ = 12.0

# Planning horizon: 6 waypoints, 0.5 s apart, in the ego frame (x forward, y left).
NUM_WAYPOINTS = 6
WAYPOINT_DT_S = 0.5

# Occ3D-nuScenes: labels in this order, "free" last.
OCC3D_CLASS_NAMES: tuple[str, ...] = (
    "others",
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
    "free",
)
NUM_OCC_CLASSES = len(OCC3D_CLASS_NAMES)
OCC_CLASS_ID = {name: index for index, name in enumerate(OCC3D_CLASS_NAMES)}
FREE_CLASS = OCC_CLASS_ID["free"]
# mIoU is averaged over the 17 non-free classes.
OCC_EVAL_CLASSES: tuple[int, ...] = tuple(range(FREE_CLASS))

# Grid: 200 x 200 x 16 voxels of 0.4 m over x, y in [-40, 40] m and z in [-1, 5.4] m, in the
# keyframe's ego frame. Voxel [i, j, k] is centred at OCC_RANGE_MIN + OCC_VOXEL_SIZE * (idx + 0.5).
OCC_GRID_SHAPE = (200, 200, 16)
OCC_VOXEL_SIZE = 0.4
OCC_RANGE_MIN = (-40.0, -40.0, -1.0)
OCC_RANGE_MAX = (40.0, 40.0, 5.4)

# RGB colours per Occ3D class, as commonly used by Occ3D/OccWorld visualisations.
OCC3D_CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),  # others
    (255, 120, 50),  # barrier
    (255, 192, 203),  # bicycle
    (255, 255, 0),  # bus
    (0, 150, 245),  # car
    (0, 255, 255),  # construction_vehicle
    (200, 180, 0),  # motorcycle
    (255, 0, 0),  # pedestrian
    (255, 240, 150),  # traffic_cone
    (135, 60, 0),  # trailer
    (160, 32, 240),  # truck
    (255, 0, 255),  # driveable_surface
    (139, 137, 137),  # other_flat
    (75, 0, 75),  # sidewalk
    (150, 240, 80),  # terrain
    (230, 230, 250),  # manmade
    (0, 175, 0),  # vegetation
    (255, 255, 255),  # free
)

# SigLIP (PaliGemma's vision tower) normalisation: pixels in [0, 1] -> [-1, 1].
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


# Default ROS 2 topics (image_transport naming for the cameras): the planner's parameter defaults
# and the topics of converted nuScenes bags, so a bag plays into the planner without remapping.
ODOMETRY_TOPIC = "/odom"
GROUND_TRUTH_TOPIC = "/gt_trajectory"  # nav_msgs/Path in converted bags, shown by rviz/occvla.rviz


def camera_image_topic(camera: str) -> str:
    return f"/{camera}/image_rect/compressed"


def camera_info_topic(camera: str) -> str:
    return f"/{camera}/camera_info"


# The high-level route command of nuScenes planners (ST-P3, UniAD, VAD): the words of the
# labelling rule (data.labels), of the prompt and the planning head (model) and of the baselines.
DRIVING_COMMANDS: tuple[str, ...] = ("turn right", "turn left", "go straight")
