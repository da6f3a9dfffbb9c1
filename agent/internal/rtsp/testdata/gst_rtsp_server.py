#!/usr/bin/python3
"""An RTSP server built on GStreamer's gst-rtsp-server, for interoperability
tests of the agent's RTSP client against a server that is not gortsplib.

Serves an H.264 MP4 or MPEG-TS file (no re-encoding: qtdemux or tsdemux,
then h264parse ! rtph264pay) at
rtsp://127.0.0.1:PORT/PATH, paced in real time. When the file ends the
stream sends RTCP BYE and then nothing, on a connection that stays open.

  gst_rtsp_server.py --port 8554 --file video.mp4 [--path cam]
      [--protocols tcp,udp] [--session-timeout 60] [--shared]

Prints "READY rtsp://127.0.0.1:PORT/PATH" on stdout once listening; logs
each client and session on stderr. Ends on SIGTERM or SIGINT.

Needs Debian's gir1.2-gst-rtsp-server-1.0, python3-gi,
gstreamer1.0-plugins-base, -good and -bad.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--file", required=True, help="an MP4 or MPEG-TS (.ts) file with an H.264 track")
    ap.add_argument("--path", default="cam")
    ap.add_argument("--protocols", default="tcp,udp", help="tcp, udp or tcp,udp")
    ap.add_argument("--session-timeout", type=int, default=0, help="session timeout in seconds (0: the default, 60)")
    ap.add_argument("--shared", action="store_true", help="one pipeline for every client (late readers join mid-GOP)")
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))

    factory = GstRtspServer.RTSPMediaFactory()
    location = args.file.replace("\\", "\\\\").replace('"', '\\"')
    demux = "tsdemux" if args.file.endswith(".ts") else "qtdemux"
    factory.set_launch(
        '( filesrc location="%s" ! %s ! h264parse config-interval=-1 '
        "! rtph264pay name=pay0 pt=96 config-interval=-1 )" % (location, demux)
    )
    factory.set_shared(args.shared)
    protocols = GstRtsp.RTSPLowerTrans(0)
    for p in args.protocols.split(","):
        if p == "tcp":
            protocols |= GstRtsp.RTSPLowerTrans.TCP
        elif p == "udp":
            protocols |= GstRtsp.RTSPLowerTrans.UDP
        else:
            ap.error("unknown protocol %r" % p)
    factory.set_protocols(protocols)
    server.get_mount_points().add_factory("/" + args.path, factory)

    def on_client(_server, client):
        log("client connected")

        def on_session(_client, session):
            if args.session_timeout > 0:
                session.set_timeout(args.session_timeout)
            log("new session", session.get_sessionid(), "timeout", session.get_timeout())

        client.connect("new-session", on_session)
        client.connect("closed", lambda _c: log("client closed"))

    server.connect("client-connected", on_client)

    # Expire sessions whose timeout passed (gst-rtsp-server leaves this to
    # the application).
    pool = server.get_session_pool()

    def cleanup():
        n = pool.cleanup()
        if n:
            log("expired sessions", n)
        return True

    GLib.timeout_add(500, cleanup)

    if server.attach(None) == 0:
        log("cannot listen on port", args.port)
        sys.exit(1)

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("READY rtsp://127.0.0.1:%d/%s" % (args.port, args.path), flush=True)
    loop.run()


if __name__ == "__main__":
    main()
