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
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

from .annotate import caption, draw_result
from .api import build_pipeline, load_parts
from .cli import add_detection_flags
from .config import ConfigError, EdgeConfig, load_config
from .detector import DetectorError
from .errors import StartupError
from .loop import run_loop
from .pipeline import FrameResult
from .runner import ModelLoadError
from .sources import Frame, ImageFilesSource, SourceError, open_source
from .spec import ModelSpecError
from .version import version_text

log = logging.getLogger("ferlite.edge.preview")

EXIT_OK = 0
EXIT_BAD_START = 2
DEFAULT_BIND = "127.0.0.1:8080"
PREVIEW_FPS = 30.0  # videos that do not say their rate (and cameras) are paced to this unless fps_limit is set
PHOTO_FPS = 2.0  # photos (a folder, an image, demo) are shown at this rate unless fps_limit is set
MAX_VIEWERS = 8  # streams at once; one thread each
WAIT_S = 0.5  # a stream checks this often whether the server is stopping


class Hub:
    """The latest frame, its result and its feed line, shared by the frame loop and the viewers.

    The loop only stores references (no drawing, no JPEG): a viewer's thread draws and encodes a
    frame once, when the first viewer asks for it, and every viewer gets the same bytes.
    """

    def __init__(self, quality: int = 80) -> None:
        self.quality = quality
        self.closed = False
        self.viewers = 0
        self._cond = threading.Condition()
        self._seq = 0
        self._image: np.ndarray | None = None
        self._result: FrameResult | None = None
        self._line = b"null"
        self._jpeg = b""
        self._jpeg_seq = -1

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
            seq, image, result = self._seq, self._image, self._result
        # Drawn and encoded outside the lock: the frame loop never waits for a viewer.
        ok, data = cv2.imencode(".jpg", draw_result(image, result), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        jpeg = data.tobytes()
        with self._cond:
            if seq > self._jpeg_seq:
                self._jpeg, self._jpeg_seq = jpeg, seq
        return seq, jpeg

    @contextmanager
    def viewer(self) -> Iterator[bool]:
        """Counts a stream while it runs; yields False when MAX_VIEWERS are already watching."""
        with self._cond:
            admitted = self.viewers < MAX_VIEWERS
            if admitted:
                self.viewers += 1
        try:
            yield admitted
        finally:
            if admitted:
                with self._cond:
                    self.viewers -= 1

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


class PreviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], hub: Hub, source_name: str, loopback: bool) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.hub = hub
        self.source_name = source_name
        self.loopback = loopback
        super().__init__(address, PreviewHandler)

    def server_bind(self) -> None:
        """TCPServer's bind, without HTTPServer's reverse DNS lookup of the address (slow offline)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def allowed_host(self, host: str | None) -> bool:
        """On loopback, only requests addressed to a loopback name: a web page that rebinds its own
        DNS name to 127.0.0.1 cannot read the camera through the visitor's browser."""
        if not self.loopback:
            return True
        if not host:
            return False
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]").lower()
        if name == "localhost":
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False


class PreviewHandler(BaseHTTPRequestHandler):
    server: PreviewServer
    server_version = "fer-preview"
    sys_version = ""
    timeout = 30.0  # a browser that stops reading the stream frees its thread after this

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

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
        with hub.viewer() as admitted:
            if not admitted:
                self._send(503, "text/plain; charset=utf-8", b"fer-preview: too many viewers\n")
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            seq = -1
            try:
                while not hub.closed:
                    got = hub.jpeg(seq)
                    if got is None:
                        continue
                    seq, data = got
                    head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                    self.wfile.write(head.encode() + data + b"\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the browser went away


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
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"--bind {text!r}: the port must be 0..65535")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    p.add_argument("--version", action="version", version=version_text("fer-preview"))
    p.add_argument("--bind", default=DEFAULT_BIND, metavar="HOST:PORT",
                   help=f"where to serve the page (default {DEFAULT_BIND}; another address only when given)")
    p.add_argument("--quality", type=int, default=80, help="JPEG quality of the stream, 10..100 (default 80)")
    return p


def preview_fps(config: EdgeConfig, source: object) -> float:
    """The rate fer-preview paces its source to: `fps_limit` when set; else photos (a folder, an image,
    demo) at PHOTO_FPS, so that each can be looked at; a video file at the rate it reports; anything
    else (a camera, a video that does not say) at PREVIEW_FPS."""
    if config.fps_limit:
        return config.fps_limit
    if isinstance(source, ImageFilesSource):
        return PHOTO_FPS
    if not getattr(source, "live", True):
        return getattr(source, "fps", None) or PREVIEW_FPS
    return PREVIEW_FPS


def serve(config: EdgeConfig, bind: tuple[str, int], quality: int, stop: Any) -> int:
    cv2.setNumThreads(config.threads or -1)
    try:
        runner, detector = load_parts(config)
    except (ModelLoadError, ModelSpecError, DetectorError) as e:
        raise StartupError(str(e)) from e
    hub = Hub(quality)
    with ExitStack() as stack:
        try:
            source = stack.enter_context(open_source(
                config.source, loop=config.loop, size=(config.frame_width, config.frame_height),
                reopen=(config.reopen_initial_s, config.reopen_max_s), should_stop=stop,
                max_pixels=config.max_image_pixels,
            ))
        except SourceError as e:
            raise StartupError(str(e)) from e
        pipeline = build_pipeline(config, runner, detector, temporal=not isinstance(source, ImageFilesSource))
        loopback = is_loopback(bind[0])
        try:
            server = PreviewServer(bind, hub, source.name, loopback)
        except OSError as e:
            raise StartupError(f"--bind {bind[0]}:{bind[1]}: cannot listen ({e.strerror or e})") from e
        stack.callback(server.server_close)
        stack.callback(hub.close)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
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
        if not config.fps_limit and isinstance(source, ImageFilesSource):
            log.info("photos shown at %g a second (--fps-limit to change)", fps)
        stats = run_loop(
            source, pipeline, [hub.set_line], max_frames=config.max_frames, should_stop=stop,
            status_every_s=config.status_every_s, fps_limit=fps,
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
        return serve(config, bind, quality, signals)
    except StartupError as e:
        print(f"fer-preview: {e}", file=sys.stderr)
        return EXIT_BAD_START


if __name__ == "__main__":
    sys.exit(main())
