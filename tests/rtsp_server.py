"""A small real RTSP server for tests and benchmarks (GStreamer's gst-rtsp-server).

Run it with the system Python that has python3-gi (``/usr/bin/python3``), not the venv
(tests and benchmarks import :class:`RtspServerProcess` from the venv to do that)::

    /usr/bin/python3 tests/rtsp_server.py --file clip.h264 --port 0 --mounts 3 --fps 30

It serves the raw H.264 (Annex-B, no B-frames) file in an endless loop at ``--fps`` on
``rtsp://127.0.0.1:PORT/cam0`` … ``/cam{N-1}`` (every client gets its own pipeline, so each
starts at a keyframe), optionally requiring ``--user``/``--password`` (basic auth). It prints
``READY <port>`` on stdout once it listens and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

try:  # present under /usr/bin/python3 (python3-gi); the venv only uses RtspServerProcess
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError):
    GLib = Gst = GstRtspServer = None

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).resolve()
INSTALL_HINT = ("GStreamer's RTSP server is not installed (apt-get install gstreamer1.0-rtsp "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-bad python3-gi; "
                "see scripts/apt-packages.txt)")


def rtsp_server_missing_reason() -> str | None:
    """None when the system Python can run this server, else why not (for pytest.skip)."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found; {INSTALL_HINT}"
    check = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import Gst; Gst.init(None); "
         "assert Gst.ElementFactory.find('rtph264pay') and Gst.ElementFactory.find('h264parse')"],
        capture_output=True, timeout=60)
    return None if check.returncode == 0 else INSTALL_HINT


class RtspServerProcess:
    """Runs this script under the system Python; ``url(i)`` names mount ``/cam{i}``.

    Args:
        clip: raw H.264 file to loop.
        port: 0 = a free port (kept across ``restart``).
        mounts, fps, user, password: as the command-line options.
    """

    def __init__(self, clip: Path, port: int = 0, mounts: int = 1, fps: int = 30,
                 user: str = "", password: str = ""):
        self.clip, self.port, self.mounts, self.fps = clip, port, mounts, fps
        self.user, self.password = user, password
        self.process: subprocess.Popen | None = None

    def url(self, mount: int = 0, user: str | None = None, password: str | None = None) -> str:
        user = self.user if user is None else user
        password = self.password if password is None else password
        credentials = f"{user}:{password}@" if user else ""
        return f"rtsp://{credentials}127.0.0.1:{self.port}/cam{mount}"

    def start(self, timeout_s: float = 30.0) -> RtspServerProcess:
        command = [SYSTEM_PYTHON, str(SCRIPT), "--file", str(self.clip), "--port", str(self.port),
                   "--mounts", str(self.mounts), "--fps", str(self.fps)]
        if self.user:
            command += ["--user", self.user, "--password", self.password]
        deadline = time.monotonic() + timeout_s
        while True:  # a just-freed port can take a moment to become bindable again
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True)
            ready, _, _ = select.select([self.process.stdout], [], [],
                                        max(0.1, deadline - time.monotonic()))
            line = self.process.stdout.readline() if ready else ""
            if line.startswith("READY "):
                self.port = int(line.split()[1])
                return self
            if self.process.poll() is None:
                self.process.kill()
            error = self.process.stderr.read()[-2000:]
            self.stop()
            if time.monotonic() > deadline:
                raise RuntimeError(f"RTSP server did not start: {line!r} {error}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Kill the server (clients see the connection drop)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self.process is not None:
            for pipe in (self.process.stdout, self.process.stderr):
                pipe.close()
        self.process = None

    def restart(self) -> RtspServerProcess:
        self.stop()
        return self.start()


def read_access_units(path: str) -> list[bytes]:
    """Split a raw H.264 Annex-B file into access units (one per frame; no B-frames).

    Parameter sets, SEI and delimiters (NAL types 6-9) belong to the next picture's unit; a
    picture may have several slices.
    """
    data = open(path, "rb").read()
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        begin = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append((begin, i + 3))
        i = data.find(b"\x00\x00\x01", i + 3)
    units, current, has_slice = [], b"", False
    for n, (begin, payload) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(data)
        nal_type = data[payload] & 0x1F
        is_slice = nal_type in (1, 5)
        # first_mb_in_slice == 0 (ue(v) "1" bit) starts a picture; so does any non-VCL unit.
        starts_picture = (is_slice and data[payload + 1] & 0x80) or nal_type in (6, 7, 8, 9)
        if has_slice and starts_picture:
            units.append(current)
            current, has_slice = b"", False
        current += data[begin:end]
        has_slice = has_slice or is_slice
    if has_slice:
        units.append(current)
    if not units:
        raise SystemExit(f"{path}: no H.264 pictures found")
    return units


class LoopingFeeder:
    """Pushes the access units into one client's appsrc at ``fps``, looping forever."""

    def __init__(self, appsrc, units: list[bytes], fps: int):
        self.appsrc = appsrc
        self.units = units
        self.index = 0
        self.timer = GLib.timeout_add(max(1, round(1000 / fps)), self.push)

    def push(self) -> bool:
        buffer = Gst.Buffer.new_wrapped(self.units[self.index % len(self.units)])
        self.index += 1
        if self.appsrc.emit("push-buffer", buffer) != Gst.FlowReturn.OK:
            self.timer = None
            return False  # the client went away: stop this feeder
        return True


def build_server(args: argparse.Namespace) -> GstRtspServer.RTSPServer:
    units = read_access_units(args.file)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    # A live appsrc timestamped on push, fed by a timer: real-time pacing, endless loop.
    launch = (
        "( appsrc name=src is-live=true do-timestamp=true format=time "
        f"caps=\"video/x-h264,stream-format=byte-stream,alignment=au,framerate={args.fps}/1\" "
        "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    feeders = []

    def on_media_configure(_factory, media):
        appsrc = media.get_element().get_child_by_name("src")
        feeders.append(LoopingFeeder(appsrc, units, args.fps))

    mounts = server.get_mount_points()
    for index in range(args.mounts):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(False)
        factory.connect("media-configure", on_media_configure)
        if args.user:
            factory.add_role_from_structure(Gst.Structure.new_from_string(
                "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            ))
        mounts.add_factory(f"/cam{index}", factory)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True, help="raw H.264 Annex-B file (.h264)")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    parser.add_argument("--mounts", type=int, default=1, help="serve /cam0 … /cam{N-1}")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--user", default="")
    parser.add_argument("--password", default="")
    args = parser.parse_args(argv)

    Gst.init(None)
    server = build_server(args)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
