# One reproducible environment in .venv/, then everything runs from it.
#   make demo   set up if needed, then run the demo
#   make test   set up if needed, then lint and run the whole test suite
#   make        (or make venv) only set up .venv, tf2_msgs included
# Creating the environment twice is a no-op; changing any file in requirements/ re-creates it.

PYTHON ?= python3
# Another index pip may take wheels from. Plain PyPI's Linux torch is the CUDA build; on a machine
# without a GPU, PIP_EXTRA_INDEX=https://download.pytorch.org/whl/cpu gives the CPU build.
PIP_EXTRA_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
REQUIREMENTS := requirements/base.txt requirements/ros.txt requirements/dev.txt
# The stamp's name carries a hash of the pins, so a changed pin means a missing stamp.
DEPS_STAMP := $(VENV)/.deps-$(shell cat $(REQUIREMENTS) | sha256sum | cut -c1-16)
INSTALL_STAMP := $(VENV)/.installed
# tf2_msgs (for /tf, /tf_static) is not on PyPI: built from interfaces/tf2_msgs with PyPI's rosidl
# toolchain. Without cmake or a C++ compiler the build says so in one line and the stamp stays
# missing: everything else works, without /tf.
TF2_STAMP := $(VENV)/.tf2_msgs
INTERFACE_BUILD := interfaces/build.sh requirements/rosidl-tools.txt
# Test tooling only (never needed at run time): the upstream launch/launch_ros/ros2cli wheels and
# composition_interfaces' source, vendored beside the repository (read its PROVENANCE.md).
ROS2_LAUNCH_VENDOR := ../shared/vendor/ros2-launch
LAUNCH_TOOLS_STAMP := $(VENV)/.ros2-launch
PACKAGE_FILES := setup.py setup.cfg package.xml resource/occvla_ros \
	$(shell find occvla_ros launch config rviz -type f -not -name '*.pyc' -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: venv install launch-tools demo test lint format clean

venv: $(DEPS_STAMP) tf2-msgs

$(DEPS_STAMP): $(REQUIREMENTS)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	# torch is pinned in the same command, so no other requirement can pull in another torch build.
	$(BIN)/pip install --quiet --disable-pip-version-check \
		$(if $(PIP_EXTRA_INDEX),--extra-index-url $(PIP_EXTRA_INDEX)) \
		-r requirements/base.txt -r requirements/ros.txt -r requirements/dev.txt torch==2.13.0
	# colcon must not crawl into the environment when building the package.
	touch $(VENV)/COLCON_IGNORE
	touch $@

.PHONY: tf2-msgs
tf2-msgs: $(DEPS_STAMP)
	@if [ ! -f $(TF2_STAMP) ] || [ -n "$$(find interfaces/tf2_msgs $(INTERFACE_BUILD) -newer $(TF2_STAMP))" ]; then \
		bash interfaces/build.sh interfaces/tf2_msgs $(VENV) && \
		if $(BIN)/python -c 'import tf2_msgs.msg' 2>/dev/null; then touch $(TF2_STAMP); fi; \
	fi

# `ros2 launch` for the tests that run the launch files under the real launch machinery. Where
# the vendor folder is absent the step says so and those tests skip, naming it.
launch-tools: venv
	@if [ ! -d $(ROS2_LAUNCH_VENDOR) ]; then \
		echo "$(ROS2_LAUNCH_VENDOR) not found: the real-launch tests will skip"; \
	elif [ ! -f $(LAUNCH_TOOLS_STAMP) ] || \
		[ -n "$$(find $(ROS2_LAUNCH_VENDOR) $(INTERFACE_BUILD) -newer $(LAUNCH_TOOLS_STAMP))" ]; then \
		$(BIN)/pip install --quiet --disable-pip-version-check --no-deps \
			$(ROS2_LAUNCH_VENDOR)/*.whl osrf-pycommon==2.0.2 && \
		bash interfaces/build.sh $(ROS2_LAUNCH_VENDOR)/composition_interfaces $(VENV) && \
		if $(BIN)/python -c 'import composition_interfaces.srv, launch_ros' 2>/dev/null; then \
			touch $(LAUNCH_TOOLS_STAMP); fi; \
	fi

# A non-editable install, as ROS users get it: data files land in $(VENV)/share/occvla_ros.
install: $(INSTALL_STAMP)

$(INSTALL_STAMP): $(DEPS_STAMP) $(PACKAGE_FILES) | tf2-msgs
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
		--force-reinstall .
	rm -rf build *.egg-info
	touch $@

# The demo, on a synthetic world (no downloads): train the tiny planner on one scene, convert the
# other (held-out) scene to a rosbag2 bag, start the planner on simulated time and replay the bag
# into it in lockstep (one camera set at a time, each answered before the next, so the score does
# not depend on the machine's load), recording the replay with everything the nodes publish; then
# write a video and a summary table (model vs the ego-status MLP and constant velocity) into
# .demo/. Fails when any scorable keyframe goes unscored.
DEMO := .demo
# The checkpoint the demo replays: the tiny planner trained by the demo itself. To replay a
# shipped model instead, point this one line at its directory (nothing is then trained).
DEMO_CHECKPOINT := $(DEMO)/run/checkpoint
# true also starts the occupancy node: the video then shows the predicted occupancy, at the cost
# of the occupancy branch's time on every set.
DEMO_OCCUPANCY := false
DEMO_TOPICS := /odom $(foreach c,CAM_FRONT CAM_FRONT_RIGHT CAM_FRONT_LEFT CAM_BACK CAM_BACK_LEFT CAM_BACK_RIGHT,/$(c)/image_rect/compressed)

demo: install
	$(BIN)/occvla doctor
	rm -rf $(DEMO)
	$(BIN)/occvla synth --out $(DEMO)/nuscenes --scenes 2 --duration 8 --width 384 --height 216
	$(MAKE) --no-print-directory $(DEMO_CHECKPOINT)
	$(BIN)/occvla train-ego-baseline --dataroot $(DEMO)/nuscenes --split mini_train \
		--cache-dir $(DEMO)/cache --out $(DEMO)/ego_mlp
	$(BIN)/occvla bag convert --dataroot $(DEMO)/nuscenes --scenes scene-0103 --out $(DEMO)/bag
	export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST; \
	$(BIN)/occvla launch checkpoint:=$(DEMO_CHECKPOINT) device:=cpu use_sim_time:=true \
		occupancy:=$(DEMO_OCCUPANCY) config:=$(VENV)/share/occvla_ros/config/replay.yaml & \
	launcher=$$!; \
	$(BIN)/occvla bag play $(DEMO)/bag --lockstep --wait-timeout 120 --wait-for $(DEMO_TOPICS) \
		--score /occvla_planner/trajectory --record $(DEMO)/replay.mcap; \
	status=$$?; kill -INT $$launcher; wait $$launcher; exit $$status
	$(BIN)/occvla replay-report $(DEMO)/replay.mcap --dataroot $(DEMO)/nuscenes \
		--baseline-checkpoint $(DEMO)/ego_mlp --out $(DEMO)

# The demo's own planner (DEMO_CHECKPOINT's default): 200 steps on the training scene.
$(DEMO)/run/checkpoint:
	$(BIN)/python -m training.train --stage planning --config training/configs/tiny.yaml \
		--dataroot $(DEMO)/nuscenes --version v1.0-mini --split mini_train --out $(DEMO)/run \
		--max-steps 200

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install launch-tools lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO) build install log *.egg-info .pytest_cache .ruff_cache
