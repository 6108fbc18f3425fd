"""An independent RTSP camera for Tandem's interoperability tests.

Serves GStreamer's test pattern, encoded live by x264enc or x265enc, at
rtsp://127.0.0.1:PORT/test through GStreamer's own RTSP server. Run with the
system interpreter (/usr/bin/python3), which has the `gi` bindings.

With GOP, the encoder's key frame interval in frames (default 25, 1 s).
With --viewer, a GStreamer client (rtspsrc) watches the stream first and
"viewer ready" goes to stderr once it has video, so that the next client
joins mid-GOP, as it would join a real camera someone else already watches.

usage: gst_rtsp_server.py PORT h264|h265 [GOP] [--viewer]
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ENCODERS = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=800 "
    "! video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=800 "
    "! rtph265pay name=pay0 pt=96 config-interval=-1",
}


def start_viewer(url):
    viewer = Gst.parse_launch(
        f"rtspsrc location={url} protocols=tcp latency=0 ! fakesink name=sink signal-handoffs=true"
    )
    seen = []

    def on_buffer(*_):
        if not seen:
            seen.append(True)
            print("viewer ready", file=sys.stderr, flush=True)

    viewer.get_by_name("sink").connect("handoff", on_buffer)
    viewer.set_state(Gst.State.PLAYING)
    return viewer


def main():
    args = [a for a in sys.argv[1:] if a != "--viewer"]
    port, codec = args[0], args[1]
    gop = int(args[2]) if len(args) > 2 else 25
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball "
        "! video/x-raw,width=640,height=360,framerate=25/1 "
        f"! {ENCODERS[codec].format(gop=gop)} )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {port}")
    url = f"rtsp://127.0.0.1:{port}/test"
    print(url, flush=True)
    viewer = start_viewer(url) if "--viewer" in sys.argv else None  # noqa: F841 (kept alive)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
