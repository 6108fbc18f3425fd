#!/usr/bin/python3
"""Replays a clock range from an ONVIF Profile G camera with GStreamer's
rtspsrc in ONVIF mode (onvif-mode=true, onvif-rate-control=false) and prints
the number of H.264 access units received, then how it ended: `eos` (the
server's RTCP BYE), `idle` (no buffer for 2 s after the first one; rtspsrc
does not always turn the BYE into EOS), `timeout` or `error …`.

usage: gst_onvif_replay.py URL START_UNIX_SECONDS END_UNIX_SECONDS [TIMEOUT_S]

rtspsrc turns a seek in ONVIF mode into `Range: clock=…`: the seek position
is seconds since the NTP epoch (1900-01-01), as in gst-rtsp-server's
test-onvif-client example.
"""
import faulthandler
import os
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

NTP_UNIX_OFFSET = 2208988800


def main():
    url, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
    # Should GStreamer hang, say where (stderr) instead of hanging silently.
    faulthandler.dump_traceback_later(timeout + 5, exit=True)
    Gst.init(None)
    pipe = Gst.parse_launch(
        f"rtspsrc name=src location={url} onvif-mode=true onvif-rate-control=false "
        "protocols=tcp latency=0 ! rtph264depay ! h264parse ! "
        "video/x-h264,alignment=au ! identity name=count ! fakesink sync=false"
    )
    frames = 0
    last_buffer = [0.0]

    def on_buffer(_pad, _info):
        nonlocal frames
        frames += 1
        last_buffer[0] = time.monotonic()
        return Gst.PadProbeReturn.OK

    pipe.get_by_name("count").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_buffer)
    loop = GLib.MainLoop()
    result = {"end": "timeout"}

    def on_message(_bus, msg):
        t = msg.type
        if t == Gst.MessageType.PROGRESS:
            on_progress(msg)
        elif t == Gst.MessageType.EOS:
            result["end"] = "eos"
            loop.quit()
        elif t == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            result["end"] = f"error {err.message} {dbg}"
            loop.quit()

    src = pipe.get_by_name("src")

    def seek():
        # Sent to rtspsrc itself: before PLAY it has no pads linked yet.
        ok = src.send_event(
            Gst.Event.new_seek(
                1.0,
                Gst.Format.TIME,
                Gst.SeekFlags.FLUSH | Gst.SeekFlags.ACCURATE,
                Gst.SeekType.SET,
                int((start + NTP_UNIX_OFFSET) * Gst.SECOND),
                Gst.SeekType.SET,
                int((end + NTP_UNIX_OFFSET) * Gst.SECOND),
            )
        )
        if not ok:
            result["end"] = "seek refused"
            loop.quit()
            return False
        pipe.set_state(Gst.State.PLAYING)
        return False

    def on_progress(msg):
        kind, code, _text = msg.parse_progress()
        # DESCRIBE and SETUP done: the seek becomes the first PLAY's Range.
        if kind == Gst.ProgressType.COMPLETE and code == "open":
            GLib.idle_add(seek)

    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    GLib.timeout_add(int(timeout * 1000), loop.quit)

    def idle():
        if frames > 0 and time.monotonic() - last_buffer[0] > 2.0:
            result["end"] = "idle"
            loop.quit()
            return False
        return True

    GLib.timeout_add(200, idle)
    pipe.set_state(Gst.State.PAUSED)
    loop.run()
    print(f"frames {frames}")
    print(result["end"], flush=True)
    # rtspsrc's teardown can block on a camera that is already gone; the
    # answer is printed, so leave without it.
    os._exit(0)


main()
