#!/usr/bin/python3
"""A GStreamer camera: gst-rtsp-server serving one shared H.264 stream
(videotestsrc, x264enc with a 10-s GOP) at rtsp://127.0.0.1:PORT/cam, with one
viewer already watching (rtspsrc), so that the next client joins mid-GOP as it
would join a real camera someone else watches. Prints "ready" once the viewer
has received video, then serves until killed (or 120 s have passed, so that
a test that dies without killing it leaves nothing running).

Usage: gst_rtsp_camera.py PORT
"""
import sys
import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port = sys.argv[1]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1 "
    "! x264enc key-int-max=250 tune=zerolatency speed-preset=ultrafast bitrate=300 "
    "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
server.attach(None)

viewer = Gst.parse_launch(
    f"rtspsrc location=rtsp://127.0.0.1:{port}/cam protocols=tcp latency=0 "
    "! fakesink name=sink signal-handoffs=true"
)
seen = {"n": 0}


def on_buffer(*_):
    seen["n"] += 1
    if seen["n"] == 1:
        print("ready", file=sys.stderr, flush=True)


viewer.get_by_name("sink").connect("handoff", on_buffer)
viewer.set_state(Gst.State.PLAYING)
loop = GLib.MainLoop()
GLib.timeout_add_seconds(120, loop.quit)
loop.run()
