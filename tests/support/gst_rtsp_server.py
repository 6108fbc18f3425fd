"""An independent RTSP camera for Tandem's interoperability tests.

Serves GStreamer's test pattern, encoded live by x264enc or x265enc, at
rtsp://127.0.0.1:PORT/test through GStreamer's own RTSP server. Run with the
system interpreter (/usr/bin/python3), which has the `gi` bindings.

usage: gst_rtsp_server.py PORT h264|h265
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ENCODERS = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=800 "
    "! video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=800 "
    "! rtph265pay name=pay0 pt=96 config-interval=-1",
}


def main():
    port, codec = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball "
        "! video/x-raw,width=640,height=360,framerate=25/1 "
        f"! {ENCODERS[codec]} )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {port}")
    print(f"rtsp://127.0.0.1:{port}/test", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
