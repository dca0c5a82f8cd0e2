"""An RTSP server for the daemon tests (GStreamer's gst-rtsp-server), on 127.0.0.1.

Run with Debian's /usr/bin/python3 (python3-gi and gir1.2-gst-rtsp-server-1.0 are
for the system Python, not the project's):

    /usr/bin/python3 tests/daemon_rtsp_server.py --port P --frames FILE --size 96 \\
        --user admin --password hunter2

FILE holds raw RGB frames (N x size x size x 3 bytes), the frames of a real video
(the digits test video). They are served in a loop at 30 fps as RTP/JPEG on
rtsp://127.0.0.1:P/live behind basic authentication. The bottom rows of each
frame carry a time stamp (16 bits of wall-clock milliseconds / 4, one 6-pixel-wide
black or white cell per bit), so a client can tell how old the frame it shows is.
Prints "ready" once listening; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

STAMP_ROWS = 8
STAMP_BITS = 16
FPS = 30


def stamp_value(t: float) -> int:
    return int(t * 1000) // 4 % (1 << STAMP_BITS)


def stamped(frame: bytes, size: int, t: float) -> bytes:
    """The frame with the time stamp drawn over its bottom rows."""
    value = stamp_value(t)
    cell = size // STAMP_BITS
    row = bytearray()
    for bit in range(STAMP_BITS):
        on = (value >> (STAMP_BITS - 1 - bit)) & 1
        row += (b"\xff\xff\xff" if on else b"\x00\x00\x00") * cell
    row += b"\x80\x80\x80" * (size - cell * STAMP_BITS)
    top = frame[: (size - STAMP_ROWS) * size * 3]
    return top + bytes(row) * STAMP_ROWS


class Feeder:
    """Pushes the looped frames into the appsrc of each new media at FPS."""

    def __init__(self, frames: list[bytes], size: int) -> None:
        self.frames = frames
        self.size = size
        self.i = 0

    def configure(self, factory: object, media: GstRtspServer.RTSPMedia) -> None:
        src = media.get_element().get_child_by_name("src")
        GLib.timeout_add(1000 // FPS, self.push, src)

    def push(self, src: Gst.Element) -> bool:
        frame = stamped(self.frames[self.i % len(self.frames)], self.size, time.time())
        self.i += 1
        buf = Gst.Buffer.new_wrapped(frame)
        return src.emit("push-buffer", buf) == Gst.FlowReturn.OK


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", default="hunter2")
    a = ap.parse_args()
    Gst.init(None)
    raw = open(a.frames, "rb").read()
    n = a.size * a.size * 3
    feeder = Feeder([raw[i : i + n] for i in range(0, len(raw) - n + 1, n)], a.size)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( appsrc name=src is-live=true format=time do-timestamp=true "
        f"caps=video/x-raw,format=RGB,width={a.size},height={a.size},framerate={FPS}/1 "
        "! videoconvert ! video/x-raw,format=I420 ! jpegenc quality=92 ! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(False)
    factory.connect("media-configure", feeder.configure)
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password), token)
    server.set_auth(auth)
    perms = GstRtspServer.RTSPPermissions()
    perms.add_role_from_structure(
        Gst.Structure.new_from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )
    )
    factory.set_permissions(perms)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{a.port}")
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
