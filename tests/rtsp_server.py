"""A small real RTSP server for tests and benchmarks (GStreamer's gst-rtsp-server).

Run it with the system Python that has python3-gi (``/usr/bin/python3``), not the venv::

    /usr/bin/python3 tests/rtsp_server.py --file clip.h264 --port 0 --mounts 3 --fps 30

It serves the raw H.264 (Annex-B, no B-frames) file in an endless loop at ``--fps`` on
``rtsp://127.0.0.1:PORT/cam0`` … ``/cam{N-1}`` (every client gets its own pipeline, so each
starts at a keyframe), optionally requiring ``--user``/``--password`` (basic auth). It prints
``READY <port>`` on stdout once it listens and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


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
        token = GstRtspServer.RTSPToken.new(
            GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, str, "user")
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
