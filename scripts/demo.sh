#!/usr/bin/env bash
# Quick start 1: install, then score a generated demo clip end to end (embedded Redis, worker
# pool, the shipped model) and print each score as it arrives on the Redis channel.
source "$(dirname "$0")/_env.sh"
install_debian_packages
setup_venv "litert"
exec .venv/bin/deepfake-detector demo "$@"
