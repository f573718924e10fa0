"""The test Hub server (``tests/hub/hub_server.py``) with slow and stalling downloads.

:class:`SlowHubServer` serves weight files (``*.safetensors``) in chunks outside the server's
lock, so that downloads by several clients overlap, and can stall them half-way:

- ``delay``: seconds to sleep between two chunks of a weight file;
- ``stall``: while this event is clear, a weight download sends half the file and waits.
"""

from __future__ import annotations

import threading
from urllib.parse import unquote, urlsplit

import hub_server
from hub_server import HubServer, git_blob_oid

CHUNKS = 8


class _SlowHandler(hub_server._Handler):
    hub: SlowHubServer

    def do_GET(self) -> None:
        segments = [unquote(s) for s in urlsplit(self.path).path.split("/") if s]
        weights = len(segments) >= 5 and segments[2] == "resolve"
        if not (weights and segments[-1].endswith(".safetensors")):
            return self._route()
        with self.hub.lock:  # look the file up under the lock, send it outside
            self.hub.requests.append(("GET", urlsplit(self.path).path, None))
            repo = self.hub.repos.get("/".join(segments[:2]))
            commit = repo.resolve(segments[3]) if repo else None
            data = commit.files.get("/".join(segments[4:])) if commit else None
        if data is None:
            with self.hub.lock:
                return self._dispatch(segments)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", f'"{git_blob_oid(data)}"')
        self.send_header("X-Repo-Commit", commit.oid)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        step = max(1, -(-len(data) // CHUNKS))
        try:
            for start in range(0, len(data), step):
                if start >= len(data) // 2 and not self.hub.stall.is_set():
                    self.wfile.flush()
                    self.hub.stalled.set()
                    self.hub.stall.wait(timeout=120)
                self.wfile.write(data[start : start + step])
                self.wfile.flush()
                if self.hub.delay:
                    threading.Event().wait(self.hub.delay)
        except (BrokenPipeError, ConnectionResetError):
            pass


class SlowHubServer(HubServer):
    """A :class:`HubServer` whose weight downloads can be slowed down and stalled."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.stall = threading.Event()  # set: downloads run; clear: they stall half-way
        self.stall.set()
        self.stalled = threading.Event()  # set once a download has stalled

    def start(self) -> SlowHubServer:
        from http.server import ThreadingHTTPServer

        server = self

        class Handler(_SlowHandler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self
