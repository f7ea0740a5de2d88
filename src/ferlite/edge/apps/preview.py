"""fer-preview: the annotated live picture and the latest labels in a browser (a developer tool).

    fer-preview --source /dev/video0                # then open http://127.0.0.1:8080/
    fer-preview --source clip.mp4 --loop --bind 127.0.0.1:9000

One HTML page, an MJPEG stream of the annotated frames (`/stream.mjpg`), the latest frame as a
JPEG (`/frame.jpg`) and the latest feed message (`/labels.json`, exactly fer-edge's line). Standard
library only (http.server and threads). It listens on 127.0.0.1 unless `--bind` names another
address, has no authentication, and is not part of the hardened fer-edge service.
"""

from __future__ import annotations

import argparse
import html
import ipaddress
import json
import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..algorithm.native import open_closed_stderr, set_opencv_threads
from ..algorithm.pipeline import FrameResult
from ..contract.errors import FerliteError, StartupError
from ..contract.version import VersionAction
from ..runtime.api import assemble
from ..runtime.config import ConfigError, EdgeConfig, load_config
from ..runtime.loop import run_loop
from ..runtime.sources import Frame, FrameSource, Requests, StopOnly
from .annotate import caption, draw_result
from .cli import add_detection_flags

if TYPE_CHECKING:
    from .daemon import Signals

log = logging.getLogger("ferlite.edge.apps.preview")

EXIT_OK = 0
EXIT_BAD_START = 2
DEFAULT_BIND = "127.0.0.1:8080"
PREVIEW_FPS = 30.0  # videos that do not say their rate (and cameras) are paced to this unless fps_limit is set
PHOTO_FPS = 2.0  # photos (a folder, an image, demo) are shown at this rate unless fps_limit is set
MAX_VIEWERS = 8  # streams at once; one thread each
WAIT_S = 0.5  # a stream checks this often whether the server is stopping
STALL_S = 2.0  # a stream viewer that cannot take one frame in this long has stopped reading: dropped
EVICT_AFTER_S = 0.5  # with MAX_VIEWERS watching, a newcomer takes the place of one stuck this long in a write
# A stream's send buffer (the kernel doubles it). Left to itself Linux grows it to ~4 MB for a client that
# never reads (seconds of frames before a write blocks); this is ~5 frames of 640x480, and ~10 MB/s at a
# 20 ms round trip for a viewer that reads.
STREAM_SNDBUF = 128 * 1024
MAX_CONNECTIONS = 64  # connections served at once (a thread each); more wait in the listen backlog
ACCEPT_WAIT_S = 0.1  # how long a connection over MAX_CONNECTIONS waits for a free thread before a 503
LISTEN_BACKLOG = 256  # connections the kernel holds until they are accepted (200 at once all get in)
REQUEST_TIMEOUT_S = 10.0  # to send the request line and headers, and to take a reply other than the stream
BUSY_REPLY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
              b"Content-Length: 34\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
              b"fer-preview: too many connections\n")


class Hub:
    """The latest frame, its result and its feed line, shared by the frame loop and the viewers.

    The loop only stores references (no drawing, no JPEG): a viewer's thread draws and encodes a
    frame once, when the first viewer asks for it; viewers asking meanwhile wait for those bytes, and
    every viewer gets the same bytes.
    """

    def __init__(self, quality: int = 80) -> None:
        self.quality = quality
        self.closed = False
        self._cond = threading.Condition()
        self._seq = 0
        self._image: np.ndarray | None = None
        self._result: FrameResult | None = None
        self._line = b"null"
        self._jpeg = b""
        self._jpeg_seq = -1
        self._encoding = -1  # the frame a viewer's thread is encoding now (-1: none)

    def set_line(self, line: bytes) -> None:
        """A sink of run_loop: the frame's feed line."""
        with self._cond:
            self._line = line.rstrip(b"\n")

    def publish(self, frame: Frame, result: FrameResult) -> None:
        """run_loop's on_result: the frame and its result become the latest."""
        with self._cond:
            self._image, self._result = frame.image, result
            self._seq += 1
            self._cond.notify_all()

    def line(self) -> bytes:
        with self._cond:
            return self._line

    def message(self) -> dict[str, Any] | None:
        value = json.loads(self.line())
        return value if isinstance(value, dict) else None

    def jpeg(self, after: int = -1, timeout: float = WAIT_S) -> tuple[int, bytes] | None:
        """The latest annotated frame as (seq, JPEG bytes) once there is one newer than `after`;
        None after `timeout` without one, or when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed or (self._seq > after and self._image is not None), timeout)
            if self.closed or self._seq <= after or self._image is None or self._result is None:
                return None
            if self._jpeg_seq == self._seq:
                return self._jpeg_seq, self._jpeg
            # Another viewer is encoding this frame: wait for its bytes (one encoding per frame, however
            # many viewers ask; ten at once on a large frame took ten times the memory).
            self._cond.wait_for(lambda: self.closed or self._encoding != self._seq, timeout)
            if self.closed or self._image is None or self._result is None:
                return None
            if self._jpeg_seq == self._seq:
                return self._jpeg_seq, self._jpeg
            if self._encoding == self._seq:
                return None
            seq, image, result = self._seq, self._image, self._result
            self._encoding = seq
        # Drawn and encoded outside the lock: the frame loop never waits for a viewer.
        jpeg = b""
        try:
            ok, data = cv2.imencode(".jpg", draw_result(image, result), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            jpeg = data.tobytes() if ok else b""
        finally:
            with self._cond:
                if self._encoding == seq:
                    self._encoding = -1
                if jpeg and seq > self._jpeg_seq:
                    self._jpeg, self._jpeg_seq = jpeg, seq
                self._cond.notify_all()
        return (seq, jpeg) if jpeg else None

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def labels_text(message: dict[str, Any] | None) -> str:
    """The page's text for one feed message ("frame 12 · 1 face" then "#3 Happy 0.93 [x, y, w, h]")."""
    if not message:
        return "waiting for the first frame…"
    faces = message.get("faces", [])
    count = f"{len(faces)} face{'s' if len(faces) != 1 else ''}" if faces else "no face"
    lines = [f"frame {message.get('frame', '?')} · {count}"]
    for face in faces:
        text = caption(face["label"], face["score"], face.get("track"))
        lines.append(f"{text} [{', '.join(str(v) for v in face['box'])}]")
    return "\n".join(lines)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ferlite preview</title>
<style>
body {{ margin: 0; font: 15px/1.4 system-ui, sans-serif; background: #1d1f21; color: #e8e8e8; }}
main {{ display: flex; flex-wrap: wrap; gap: 16px; padding: 16px; align-items: flex-start; }}
img {{ max-width: min(100%, 960px); background: #000; border-radius: 4px; }}
h1 {{ font-size: 18px; margin: 0 0 8px; }}
pre {{ font: 16px/1.5 ui-monospace, monospace; margin: 0; min-width: 260px; }}
section {{ flex: 1 1 280px; min-width: 0; }}
.source {{ color: #9a9a9a; margin: 0 0 12px; overflow-wrap: anywhere; }}
</style>
</head>
<body>
<main>
<img id="stream" src="/stream.mjpg" alt="annotated live picture">
<section>
<h1>ferlite preview</h1>
<p class="source">source: {source}</p>
<pre id="labels" aria-live="polite">{labels}</pre>
</section>
</main>
<script src="/app.js"></script>
</body>
</html>
"""

SCRIPT = """"use strict";
const labels = document.getElementById("labels");
function caption(face) {
  const track = face.track === undefined || face.track === null ? "" : "#" + face.track + " ";
  return track + face.label + " " + face.score.toFixed(2) + " [" + face.box.join(", ") + "]";
}
function render(message) {
  const faces = message.faces || [];
  const count = faces.length ? faces.length + (faces.length === 1 ? " face" : " faces") : "no face";
  return ["frame " + message.frame + " \\u00b7 " + count].concat(faces.map(caption)).join("\\n");
}
async function poll() {
  try {
    const response = await fetch("/labels.json", {cache: "no-store"});
    const message = response.ok ? await response.json() : null;
    if (message) {
      labels.textContent = render(message);
      labels.dataset.live = "1";
    }
  } catch (error) {
    labels.dataset.live = "0";
  }
  setTimeout(poll, 300);
}
poll();
"""

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}


class Viewer:
    """One stream being watched: its socket and since when a write to it has been waiting (None: not writing)."""

    __slots__ = ("sock", "writing_since")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.writing_since: float | None = None


class ViewerSlots:
    """At most `limit` streams at once. With all taken, a newcomer takes the place of the viewer stuck
    longest in a write (at least EVICT_AFTER_S: it stopped reading, its socket buffers are full), which is
    shut; with none stuck, the newcomer is refused. Clients that connect to /stream.mjpg and never read
    cannot lock every viewer out."""

    def __init__(self, limit: int = MAX_VIEWERS) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._viewers: list[Viewer] = []

    def admit(self, sock: socket.socket) -> Viewer | None:
        now = time.monotonic()
        with self._lock:
            if len(self._viewers) >= self.limit:
                stuck = [v for v in self._viewers
                         if v.writing_since is not None and now - v.writing_since >= EVICT_AFTER_S]
                if not stuck:
                    return None
                victim = min(stuck, key=lambda v: v.writing_since or now)
                self._viewers.remove(victim)
                _shut(victim.sock)
                log.debug("a stream viewer stuck in a write gave its place to a new one")
            viewer = Viewer(sock)
            self._viewers.append(viewer)
            return viewer

    def leave(self, viewer: Viewer) -> None:
        with self._lock:
            if viewer in self._viewers:
                self._viewers.remove(viewer)

    def __len__(self) -> int:
        with self._lock:
            return len(self._viewers)


def _shut(sock: socket.socket) -> None:
    """End a connection from another thread: its blocked send() fails at once."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already gone
        pass


class PreviewServer(ThreadingHTTPServer):
    """Serves the page, the stream and the feed line; at most MAX_CONNECTIONS connections at once.

    Loopback or not is decided by the address the socket is bound to (`127.1`, `0x7f000001`,
    `[::ffff:127.0.0.1]` and `localhost` all are): on loopback only requests addressed to a loopback
    name, or to the name given to --bind, are answered."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], hub: Hub, source_name: str) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.hub = hub
        self.source_name = source_name
        self.loopback = False  # set in server_bind, from the address bound to
        self.host_names = {"localhost", address[0].lower()}
        self.viewers = ViewerSlots()
        self.refused = 0
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._refusal_logged = -float("inf")
        self._drawing = 0
        self._idle = threading.Condition()
        super().__init__(address, PreviewHandler)

    @contextmanager
    def drawing(self) -> Iterator[None]:
        """Around a viewer's Hub.jpeg (which draws and encodes in OpenCV): counted, so that the process does
        not exit while a connection thread is inside OpenCV (its C++ runtime aborts: "terminate called")."""
        with self._idle:
            self._drawing += 1
        try:
            yield
        finally:
            with self._idle:
                self._drawing -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> None:
        """Once the hub is closed (no new drawing starts): wait for the drawing under way to end."""
        with self._idle:
            self._idle.wait_for(lambda: self._drawing == 0, timeout)

    def server_bind(self) -> None:
        """TCPServer's bind, without HTTPServer's reverse DNS lookup of the address (slow offline)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.loopback = is_loopback(self.server_name)

    def allowed_host(self, host: str | None) -> bool:
        """On loopback, only requests addressed to a loopback name: a web page that rebinds its own
        DNS name to 127.0.0.1 cannot read the camera through the visitor's browser."""
        if not self.loopback:
            return True
        if not host:
            return False
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]").lower()
        return name in self.host_names or is_loopback(name)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection when fewer than MAX_CONNECTIONS are being served; else it waits
        ACCEPT_WAIT_S for one to end, then gets a 503 without a thread."""
        if not self._slots.acquire(timeout=ACCEPT_WAIT_S):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= 10.0:
            self._refusal_logged = now
            log.warning("%d connections at once (the limit): refusing more with 503 (%d so far)", MAX_CONNECTIONS,
                        self.refused)
        try:
            request.setblocking(False)
            request.send(BUSY_REPLY)
        except OSError:  # gone, or its buffer is full: the close says enough
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line, never a traceback: a client that reset, closed or stalled is routine (DEBUG)."""
        error = sys.exc_info()[1]
        client = client_address[0] if isinstance(client_address, tuple) else client_address
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("client %s: %s", client, error)
        else:
            log.warning("a request from %s failed: %s: %s", client, type(error).__name__, error)


class PreviewHandler(BaseHTTPRequestHandler):
    server: PreviewServer
    raw_requestline: bytes  # set by handle_one_request
    server_version = "fer-preview"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S  # the stream has its own: STALL_S per frame

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    def parse_request(self) -> bool:
        """HTTP/0.9 (`GET /` without a version) gets a 505 and the connection is closed: the base class
        would wait for headers that such a client never sends."""
        if len(self.raw_requestline.split()) != 2:
            return super().parse_request()
        self.command = ""
        self.request_version = "HTTP/1.0"
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.close_connection = True
        self.send_error(505, "HTTP/0.9 is not supported: send HTTP/1.0 or later")
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self.server.allowed_host(self.headers.get("Host")):
            self._send(403, "text/plain; charset=utf-8", b"fer-preview: Host not allowed\n")
            return
        path = self.path.split("?", 1)[0]
        hub = self.server.hub
        if path == "/":
            page = PAGE.format(source=html.escape(self.server.source_name),
                               labels=html.escape(labels_text(hub.message())))
            self._send(200, "text/html; charset=utf-8", page.encode())
        elif path == "/app.js":
            self._send(200, "text/javascript; charset=utf-8", SCRIPT.encode())
        elif path == "/labels.json":
            self._send(200, "application/json", hub.line())
        elif path == "/frame.jpg":
            with self.server.drawing():
                got = hub.jpeg(timeout=5.0)
            if got is None:
                self._send(503, "text/plain; charset=utf-8", b"fer-preview: no frame yet\n")
            else:
                self._send(200, "image/jpeg", got[1])
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self._send(404, "text/plain; charset=utf-8", b"fer-preview: not found\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        hub = self.server.hub
        viewer = self.server.viewers.admit(self.connection)
        if viewer is None:
            self._send(503, "text/plain; charset=utf-8", b"fer-preview: too many viewers\n")
            return
        self.close_connection = True
        try:
            # Every frame must be taken within STALL_S (sendall's whole time): a viewer that stopped reading is
            # dropped, and while it is stuck in a write a newcomer may take its place (ViewerSlots).
            self.connection.settimeout(STALL_S)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
            viewer.writing_since = time.monotonic()
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            viewer.writing_since = None
            seq = -1
            while not hub.closed:
                with self.server.drawing():
                    got = hub.jpeg(seq)
                if got is None:
                    continue
                seq, data = got
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                viewer.writing_since = time.monotonic()
                self.wfile.write(head.encode() + data + b"\r\n")
                viewer.writing_since = None
        except OSError as e:  # went away, stopped reading (TimeoutError), or its place was taken
            log.debug("stream viewer %s dropped: %s", self.address_string(), e)
        finally:
            self.server.viewers.leave(viewer)


def parse_bind(text: str) -> tuple[str, int]:
    """"HOST:PORT" or "[IPv6]:PORT" -> (host, port). Port 0: any free port."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise ConfigError(f"--bind {text!r}: expected [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(f"--bind {text!r}: expected HOST:PORT (e.g. {DEFAULT_BIND}; [::1]:8080 for IPv6)")
    if not host:
        raise ConfigError(f"--bind {text!r}: give the address too, e.g. {DEFAULT_BIND} (0.0.0.0:PORT for every "
                          "interface)")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:  # not "٣" (Arabic 3)
        raise ConfigError(f"--bind {text!r}: the port must be 0..65535")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """True for "localhost" and loopback addresses, IPv4-mapped ones included (`::ffff:127.0.0.1`)."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-preview",
        description="Annotated live picture and labels in a browser (developer tool; 127.0.0.1 by default).",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--source", help="auto | demo | picamera2 | /dev/videoN | N | VIDEO | IMAGE | FOLDER (default auto)")
    p.add_argument("--model", help="int8 .tflite with its .spec.json (default: the shipped model)")
    p.add_argument("--config", dest="config_file", metavar="FILE", help="fer-edge's TOML config; flags override it")
    p.add_argument("--threads", type=int, help="interpreter and OpenCV threads (default: all cores)")
    p.add_argument("--max-frames", type=int, help="stop processing after N frames (the page stays up)")
    p.add_argument("--loop", action="store_const", const=True, help="replay a folder or video forever")
    p.add_argument("--whole-frame", action="store_const", const=True, help="no detection: the whole frame is one face")
    p.add_argument("--fps-limit", type=float,
                   help=f"pace the source (default here: photos {PHOTO_FPS:g} fps, a video its own rate, "
                   f"else {PREVIEW_FPS:g})")
    p.add_argument("--detect-width", type=int, help="detect on frames scaled to this width (0: full size)")
    p.add_argument("--max-faces", type=int, help="most faces classified per frame")
    add_detection_flags(p)
    p.add_argument("--log-level", help="DEBUG | INFO | WARNING | ERROR")
    p.add_argument("--version", action=VersionAction, prog="fer-preview")
    p.add_argument("--bind", default=DEFAULT_BIND, metavar="HOST:PORT",
                   help=f"where to serve the page (default {DEFAULT_BIND}; another address only when given)")
    p.add_argument("--quality", type=int, default=80, help="JPEG quality of the stream, 10..100 (default 80)")
    return p


def preview_fps(config: EdgeConfig, source: FrameSource) -> float:
    """The rate fer-preview paces its source to: `fps_limit` when set; else photos (a folder, an image,
    demo) at PHOTO_FPS, so that each can be looked at; a video file at the rate it reports; anything
    else (a camera, a video that does not say) at PREVIEW_FPS."""
    if config.fps_limit:
        return config.fps_limit
    if not source.temporal:
        return PHOTO_FPS
    return source.fps or PREVIEW_FPS


def serve(config: EdgeConfig, bind: tuple[str, int], quality: int, stop: Callable[[], bool],
          signals: Signals | None = None) -> int:
    """Serve the page and run the frame loop until `stop()` (then EXIT_OK); `signals` (fer-edge's)
    also reopen the source (SIGHUP) and log a status line (SIGUSR1), as fer-edge does.

    Raises:
        FerliteError: the model, detector, source or address refused (one line).
    """
    requests: Requests = signals or StopOnly(stop)
    set_opencv_threads(config.threads)
    parts = assemble(config)
    hub = Hub(quality)
    with ExitStack() as stack:
        source = stack.enter_context(parts.open_source(requests))
        pipeline = parts.pipeline_for(source)
        try:
            server = PreviewServer(bind, hub, source.name)
        except (OSError, ValueError) as e:  # ValueError: a name IDNA cannot encode, a NUL
            raise StartupError(f"--bind {bind[0]}:{bind[1]}: cannot listen ({getattr(e, 'strerror', None) or e})") \
                from e
        loopback = server.loopback
        stack.callback(server.server_close)
        stack.callback(server.wait_idle, WAIT_S)  # after hub.close: no thread left in OpenCV at exit
        stack.callback(hub.close)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                  name="fer-preview-http", daemon=True)
        thread.start()
        stack.callback(server.shutdown)
        host, port = server.server_name, server.server_port
        url_host = f"[{host}]" if ":" in host else host
        if not loopback:
            log.warning("serving on %s: anyone who can reach this address sees the camera (no authentication)",
                        bind[0])
        print(f"fer-preview: http://{url_host}:{port}/ (Ctrl-C to stop)", flush=True)
        fps = preview_fps(config, source)
        if not config.fps_limit and not source.temporal:
            log.info("photos shown at %g a second (--fps-limit to change)", fps)
        stats = run_loop(
            source, pipeline, [hub.set_line], max_frames=config.max_frames, should_stop=stop,
            status_every_s=config.status_every_s, fps_limit=fps,
            status_requested=signals.take_status if signals is not None else lambda: False,
            on_result=hub.publish,
        )
        log.info("%d frames, %d faces, %.1f fps", stats.frames, stats.faces, stats.fps)
        if stats.ended != "stop":
            log.info("no more frames (%s); the page shows the last one until Ctrl-C", stats.ended)
            while not stop():
                time.sleep(0.2)
    return EXIT_OK




def main(argv: Sequence[str] | None = None) -> int:
    from .daemon import Signals  # the same signal handling as fer-edge

    open_closed_stderr()  # `2>&-`: before any file is opened, or it would become fd 2
    args = build_parser().parse_args(argv)
    level = getattr(args, "log_level", "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    values = dict(vars(args))
    config_file = values.pop("config_file", None)
    bind_text, quality = values.pop("bind"), values.pop("quality")
    if "log_level" in values:
        values["log_level"] = values["log_level"].upper()
    try:
        config = load_config(config_file, values)
        bind = parse_bind(bind_text)
        if not 10 <= quality <= 100:
            raise ConfigError(f"--quality must be within 10..100, got {quality}")
    except ConfigError as e:
        print(f"fer-preview: {e}", file=sys.stderr)
        return EXIT_BAD_START
    logging.getLogger().setLevel(config.log_level.upper())
    signals = Signals()
    signals.install()
    try:
        return serve(config, bind, quality, signals, signals)
    except FerliteError as e:
        print(f"fer-preview: {e}", file=sys.stderr)
        return EXIT_BAD_START


if __name__ == "__main__":
    sys.exit(main())
