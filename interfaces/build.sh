#!/bin/bash
# Build a ROS 2 interface package (package.xml + CMakeLists.txt + msg/srv files) that PyPI lacks
# with PyPI's rosidl toolchain, and install it into a venv that has the ros-* wheels (.venv):
#
#   bash interfaces/build.sh PACKAGE_SOURCE_DIR VENV
#
# The toolchain (requirements/rosidl-tools.txt) lives in a tool venv at VENV/.rosidl-tools, made
# once and shared by every package; VENV receives only the built package (lib/*.so, its Python
# module in site-packages, share/<package>/ and the ament index entry). The wheels' .pth
# bootstrapper puts VENV/lib on LD_LIBRARY_PATH, so nothing needs sourcing afterwards.
#
# Where cmake, a C++ compiler, make or the Python headers are missing, it says so in one line and
# exits 0 without building (the caller goes on without the package); a failing build exits 1.
set -euo pipefail
SOURCE=$(cd "${1:?usage: build.sh PACKAGE_SOURCE_DIR VENV}" && pwd)
VENV=$(cd "${2:?usage: build.sh PACKAGE_SOURCE_DIR VENV}" && pwd)
PACKAGE=$(basename "$SOURCE")
HERE=$(cd "$(dirname "$0")" && pwd)
REQUIREMENTS=$HERE/../requirements/rosidl-tools.txt

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v c++ >/dev/null || command -v g++ >/dev/null || missing+=("a C++ compiler")
command -v make >/dev/null || missing+=(make)
PYTHON_INCLUDE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$PYTHON_INCLUDE/Python.h" ] || missing+=("the Python headers (python3-dev)")
if ((${#missing[@]})); then
  echo "$PACKAGE not built: $(IFS=,; echo "${missing[*]}" | sed 's/,/, /g') missing (needs cmake >= 3.21, g++, make, python3-dev); going on without it"
  exit 0
fi

TOOLS=$VENV/.rosidl-tools
TOOLS_STAMP=$TOOLS/.deps-$(sha256sum "$REQUIREMENTS" | cut -c1-16)
if [ ! -f "$TOOLS_STAMP" ]; then
  rm -rf "$TOOLS"
  "$VENV/bin/python" -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  # colcon-style crawlers and pytest must not walk into the tool venv.
  touch "$TOOLS/COLCON_IGNORE" "$TOOLS_STAMP"
fi

BUILD=$VENV/.rosidl-build/$PACKAGE
rm -rf "$BUILD"
mkdir -p "$BUILD"
export PATH=$TOOLS/bin:$PATH CMAKE_PREFIX_PATH=$TOOLS AMENT_PREFIX_PATH=$TOOLS
step() {  # step NAME COMMAND...: run quietly, show the log's end if it fails
  if ! nice -n 10 "${@:2}" >"$BUILD/$1.log" 2>&1; then
    tail -n 30 "$BUILD/$1.log"
    echo "$PACKAGE: $1 failed (full log: $BUILD/$1.log)" >&2
    exit 1
  fi
}
step configure cmake -S "$SOURCE" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$TOOLS/bin/python"
step build cmake --build "$BUILD" -j2
step install cmake --install "$BUILD" --prefix "$VENV"
"$VENV/bin/python" -c "import importlib; importlib.import_module('$PACKAGE')"
echo "$PACKAGE built and installed into $VENV"
