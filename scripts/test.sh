#!/usr/bin/env bash
# Quick start 2: install everything the tests use (real redis-server, GStreamer RTSP server,
# Chromium), check the code with ruff and run the whole suite. Extra arguments go to pytest.
source "$(dirname "$0")/_env.sh"
mapfile -t extra < <(grep -v '^\s*#' scripts/apt-packages.txt 2>/dev/null | sed '/^\s*$/d')
install_debian_packages "${extra[@]}"
setup_venv "test,litert,train,openvino"
# The face mesh (Apache-2.0) for the landmark tests, extracted from the mediapipe wheel on PyPI;
# without a network those tests fetch it themselves or skip.
.venv/bin/deepfake-detector fetch-landmarks >/dev/null 2>&1 \
    || echo "note: the face-mesh model could not be fetched; landmark tests will try again or skip"
# The house style's lint rules ([tool.ruff] in pyproject.toml), before any test runs.
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
