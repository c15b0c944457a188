"""A rate-limiting proxy in front of the suite's real S3 (SeaweedFS) or GCS (fake-gcs-server) server.

Neither emulator limits anything, but real stores do: GCS allows about one
write a second to one object name (429 beyond), S3 answers 503 SlowDown under
load. This proxy forwards every request unchanged (the Host header too, so S3
signatures still verify) and refuses a write to an object name written less
than ``1 / writes_per_second`` seconds before, the way the store would. It
counts requests by kind (read, write, list, other) and by object, so tests and
the benchmark can say how many requests a call costs.

Used by ``tests/test_fleet.py`` and ``benchmarks/fleet.py``; not a general proxy
(only what boto3, cloud-files and google-cloud-storage send).
"""
from __future__ import annotations

import collections
import http.client
import http.server
import re
import threading
import time
import urllib.parse
from typing import Dict, Optional, Tuple

_GCS_BUSY = (b'{"error": {"code": 429, "message": "The object exceeded the rate limit for object mutation '
             b'operations (create, update, and delete).", "errors": [{"reason": "rateLimitExceeded"}]}}')
_S3_BUSY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b'<Message>Please reduce your request rate.</Message></Error>')
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class RateLimitProxy:
    """``RateLimitProxy(upstream, "s3" | "gcs").start()``; ``.endpoint``; ``.counts``; ``.stop()``."""

    def __init__(self, upstream: str, flavor: str, writes_per_second: Optional[float] = 1.0):
        assert flavor in ("s3", "gcs"), flavor
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.flavor = flavor
        self.limit = writes_per_second            # None: count only, never refuse
        self.lock = threading.Lock()
        self.last_write: Dict[str, float] = {}
        self.counts: collections.Counter = collections.Counter()        # kind -> requests
        self.by_object: collections.Counter = collections.Counter()     # (kind, object) -> requests
        self.server: Optional[http.server.ThreadingHTTPServer] = None
        self.refuse_next: set = set()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> RateLimitProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="ratelimit-proxy", daemon=True).start()
        return self

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.by_object.clear()
            self.last_write.clear()

    def writes_to(self, suffix: str) -> int:
        """Writes let through to objects whose name ends with ``suffix`` (``/provenance``, say)."""
        return self.by_object_count("write", suffix)

    def by_object_count(self, kind: str, suffix: str) -> int:
        with self.lock:
            return sum(n for (k, name), n in self.by_object.items() if k == kind and name.endswith(suffix))

    def refuse_next_write(self, suffix: str) -> None:
        """The next write to an object whose name ends with ``suffix`` is refused, as if one had just landed."""
        with self.lock:
            self.refuse_next.add(suffix)

    # ------------------------------------------------------------------ the rules
    def classify(self, method: str, path: str, body: bytes) -> Tuple[str, str]:
        """(kind, object name) of one request."""
        url = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(url.query)
        if self.flavor == "s3":
            parts = url.path.lstrip("/").split("/", 1)
            name = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
            if method in ("PUT", "DELETE") and name:
                return "write", name
            if method == "POST" and "delete" in query:
                return "write", "(batch delete)"
            if method in ("GET", "HEAD") and not name:
                return "list", ""
            return ("read", name) if method in ("GET", "HEAD") else ("other", name)
        if url.path.startswith("/upload/"):
            found = re.search(rb'"name"\s*:\s*"([^"]+)"', body)
            return "write", (found.group(1).decode() if found else query.get("name", [""])[0])
        match = re.match(r"^(?:/download)?/storage/v1/b/[^/]+/o(?:/(.+))?$", url.path)
        if match is None:
            return "other", url.path
        name = urllib.parse.unquote(match.group(1) or "")
        if not name:
            return ("list", "") if method == "GET" else ("other", "")
        if method in ("DELETE", "PATCH", "PUT", "POST"):
            return "write", name
        return "read", name

    def admit(self, kind: str, name: str) -> bool:
        with self.lock:
            self.counts[kind] += 1
            refused = [s for s in self.refuse_next if name.endswith(s)] if kind == "write" else []
            if refused:
                self.refuse_next.discard(refused[0])
                self.counts["limited"] += 1
                self.by_object[("limited", name)] += 1
                return False
            if kind == "write" and self.limit:
                now = time.monotonic()
                if now - self.last_write.get(name, -1e9) < 1.0 / self.limit:
                    self.counts["limited"] += 1
                    self.by_object[("limited", name)] += 1
                    return False
                self.last_write[name] = now
            self.by_object[(kind, name)] += 1
            return True


class _Handler(http.server.BaseHTTPRequestHandler):
    owner: RateLimitProxy
    protocol_version = "HTTP/1.1"
    _local = threading.local()

    def log_message(self, *args: object) -> None:
        pass

    def _body(self) -> Tuple[bytes, bool]:
        """The request body as sent (chunked bodies kept chunked), and whether it was chunked."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raw = b""
            while True:
                line = self.rfile.readline()
                raw += line
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:           # trailers, up to the empty line
                        line = self.rfile.readline()
                        raw += line
                        if line in (b"\r\n", b"\n", b""):
                            return raw, True
                raw += self.rfile.read(size + 2)
        length = int(self.headers.get("Content-Length") or 0)
        return (self.rfile.read(length) if length else b""), False

    def _forward(self) -> None:
        body, chunked = self._body()
        kind, name = self.owner.classify(self.command, self.path, body)
        if not self.owner.admit(kind, name):
            self._refuse()
            return
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(*self.owner.upstream, timeout=60)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for key, value in self.headers.items():
                    if key.lower() not in _HOP or (chunked and key.lower() == "transfer-encoding"):
                        conn.putheader(key, value)
                conn.endheaders()
                if body:
                    conn.send(body)
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        self.send_response(response.status, response.reason)
        head = self.command == "HEAD"
        for key, value in response.getheaders():
            if key.lower() not in _HOP and (head or key.lower() != "content-length"):
                self.send_header(key, value)
        if not head:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _refuse(self) -> None:
        s3 = self.owner.flavor == "s3"
        body = _S3_BUSY if s3 else _GCS_BUSY
        self.send_response(503 if s3 else 429)
        self.send_header("Content-Type", "application/xml" if s3 else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward
