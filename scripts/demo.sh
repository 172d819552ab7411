#!/usr/bin/env bash
# Quick start 1: install, then score a generated demo clip end to end (embedded Redis, worker
# pool, the shipped model) and print each score as it arrives on the Redis channel.
source "$(dirname "$0")/_env.sh"
install_debian_packages
setup_venv "litert,openvino"
# YuNet (MIT, OpenCV model zoo) is the faster, more accurate face detector; without a network the
# demo falls back to OpenCV's Haar cascade.
.venv/bin/deepfake-detector fetch-yunet >/dev/null 2>&1 \
    || echo "note: YuNet could not be downloaded; faces are found with the Haar cascade"
exec .venv/bin/deepfake-detector demo "$@"
