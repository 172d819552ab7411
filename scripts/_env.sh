# Shared by scripts/demo.sh and scripts/test.sh: system packages, a virtualenv, the project.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages: redis-server for the embedded Redis, plus what scripts/apt-packages.txt lists
# (GStreamer's RTSP server for the live-source tests, Chromium for the dashboard tests).
install_debian_packages() {
    local wanted=("redis-server" "$@") missing=()
    if ! python3 -c "import ensurepip" >/dev/null 2>&1; then wanted+=("python3-venv"); fi
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing Debian packages: ${missing[*]}"
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

setup_venv() {
    local extras="$1"
    if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[${extras}]"
}
