"""Shared fixtures: real volumes on every CloudFiles protocol, real git repositories, a spool dir.

``cloudpath`` runs a test once per protocol: ``file``, ``mem``, ``s3`` (a local SeaweedFS server
reached through the CloudFiles alias ``labs3://``) and ``gs`` (a local fake-gcs-server). The
servers start on first use and stop at the end of the session; deselect them with
``-m "not s3"`` / ``-m "not gcs"``.

Known limit of the GCS emulator: it has no batch API, so CloudFiles ``exists()`` and
``delete()`` (and what uses them: ``touch``, ``CloudFile.exists``) fail on ``gs://`` here.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from servers import FakeGCS, SeaweedS3, fast_failures  # noqa: E402

S3_ALIAS = "labs3"
S3_READONLY_ALIAS = "labs3ro"
PROTOCOLS = ("file", "mem", "s3", "gs")
GIT_REMOTE = "https://user:SECRETTOKEN@github.com/lab/pipeline.git"


_HOME_DIRS = ("IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR")
_session_home: list = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "s3: needs the local SeaweedFS S3 server (deselect with -m 'not s3')")
    config.addinivalue_line("markers", "gcs: needs the local fake-gcs-server (deselect with -m 'not gcs')")
    # The suite leaves ``~`` as it found it: IPython and Jupyter kernels write their profile,
    # history and connection files here instead (subprocesses inherit it), removed at the end.
    import atexit
    import shutil
    import tempfile

    home = tempfile.mkdtemp(prefix="ptb-tests-home-")
    _session_home.append(home)
    for var in _HOME_DIRS:
        os.environ[var] = os.path.join(home, var.lower())
    # removed at exit, after IPython's own exit handler (registered later, so run earlier) wrote its history
    atexit.register(shutil.rmtree, home, True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for ``s3_server``/``gcs_server`` directly is marked like the protocol params."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "s3_server" in names:
            item.add_marker(pytest.mark.s3)
        if "gcs_server" in names:
            item.add_marker(pytest.mark.gcs)


@pytest.fixture(scope="session")
def cloud_home(tmp_path_factory: pytest.TempPathFactory):
    """A private CloudFiles/CloudVolume config dir for the session: no user secrets are read.

    Set in the environment (for subprocesses, e.g. the ``ptb`` CLI) and patched into the
    already-imported cloudfiles modules (which read it at import). Holds ``aliases.json`` so
    subprocesses know ``labs3://`` too.
    """
    import cloudfiles.paths
    import cloudfiles.secrets

    home = tmp_path_factory.mktemp("cloud-home")
    (home / "secrets").mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("CLOUD_FILES_DIR", str(home))
    mp.setenv("CLOUD_VOLUME_DIR", str(home))
    mp.setattr(cloudfiles.secrets, "CLOUD_FILES_SECRETS_DIR", str(home / "secrets"))
    mp.setattr(cloudfiles.secrets, "CLOUD_VOLUME_SECRETS_DIR", str(home / "secrets"))
    mp.setattr(cloudfiles.secrets, "PROJECT_NAME", None)
    mp.setattr(cloudfiles.secrets, "GOOGLE_CREDENTIALS_CACHE", {})
    mp.setattr(cloudfiles.paths, "ALIAS_FILE", str(home / "aliases.json"))
    yield home
    mp.undo()


def _flush_pending_ptb_writes() -> None:
    """Let ptb finish background view writes while the servers still run.

    Otherwise they run at interpreter exit against a stopped server and wait on retries.
    """
    updater = sys.modules.get("ptb.store.updater")
    if updater is not None:
        updater.flush()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory, cloud_home: Path):
    """A running SeaweedS3 (``.endpoint``, ``.bucket``, ``.restart()``, ``.stopped()``).

    Also for the session: AWS_* credentials in the environment (CloudFiles reads them only
    when AWS_SESSION_TOKEN is set too) and the alias ``labs3://`` -> ``s3://<endpoint>/``,
    because CloudVolume rejects ``s3://http://...`` paths. ``.root`` is ``labs3://<bucket>/``.
    """
    import json

    import cloudfiles.paths

    server = SeaweedS3().start(tmp_path_factory.mktemp("seaweedfs"))
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    mp.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    mp.setenv("AWS_SESSION_TOKEN", "")
    mp.setenv("AWS_DEFAULT_REGION", server.region)
    host = f"s3://{server.endpoint}/"
    cloudfiles.paths.add_alias(S3_ALIAS, host)
    (cloud_home / "aliases.json").write_text(json.dumps({S3_ALIAS: {"host": host}}))
    server.root = f"{S3_ALIAS}://{server.bucket}/"
    try:
        yield server
    finally:
        _flush_pending_ptb_writes()
        cloudfiles.paths.remove_alias(S3_ALIAS)
        mp.undo()
        server.stop()


@pytest.fixture(scope="session")
def s3_readonly(s3_server, cloud_home: Path) -> Iterator[str]:
    """The same S3 server seen with read-only credentials: returns the root ``labs3ro://<bucket>/``.

    ``labs3ro://<bucket>/x`` and ``labs3://<bucket>/x`` are the same objects. CloudFiles keeps
    one connection pool and one credentials file per alias, so ``labs3ro://`` uses the key pair
    in ``<cloud_home>/secrets/labs3ro-secret.json``, which SeaweedFS lets read and list only:
    every write through it is refused (AccessDenied), in subprocesses too (aliases.json).
    """
    import json

    import cloudfiles.paths

    (cloud_home / "secrets" / f"{S3_READONLY_ALIAS}-secret.json").write_text(json.dumps({
        "AWS_ACCESS_KEY_ID": s3_server.readonly_access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.readonly_secret_key,
        "AWS_DEFAULT_REGION": s3_server.region,
    }))
    host = f"s3://{s3_server.endpoint}/"
    cloudfiles.paths.add_alias(S3_READONLY_ALIAS, host)
    aliases = cloud_home / "aliases.json"
    known = json.loads(aliases.read_text()) if aliases.exists() else {}
    aliases.write_text(json.dumps({**known, S3_READONLY_ALIAS: {"host": host}}))
    try:
        yield f"{S3_READONLY_ALIAS}://{s3_server.bucket}/"
    finally:
        cloudfiles.paths.remove_alias(S3_READONLY_ALIAS)


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory, cloud_home: Path):
    """A running FakeGCS, with STORAGE_EMULATOR_HOST set for the session; ``.root`` is ``gs://<bucket>/``."""
    server = FakeGCS().start(tmp_path_factory.mktemp("fake-gcs"))
    mp = pytest.MonkeyPatch()
    mp.setenv("STORAGE_EMULATOR_HOST", server.endpoint)
    server.root = f"gs://{server.bucket}/"
    try:
        yield server
    finally:
        _flush_pending_ptb_writes()
        mp.undo()
        server.stop()


def assert_alias_registered(cloudpath: str) -> None:
    """Fail loudly if ``cloudpath`` uses an alias CloudFiles does not know.

    An unregistered ``labs3://bucket/x`` is silently taken as the relative local path
    ``labs3:/bucket/x``, so a test would pass while writing to the working directory.
    """
    import cloudfiles.paths

    proto = cloudpath.split("://", 1)[0]
    if proto in ("file", "mem", "gs", "s3"):
        return
    assert proto in cloudfiles.paths.ALIASES, f"CloudFiles alias {proto!r} is not registered"
    assert cloudfiles.paths.extract(cloudpath).protocol == "s3", cloudpath


@pytest.fixture(params=[
    "file",
    "mem",
    pytest.param("s3", marks=pytest.mark.s3),
    pytest.param("gs", marks=pytest.mark.gcs),
])
def cloudpath(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, unique volume on one protocol (the test runs once per protocol).

    file://<tmp_path>/volume, mem://ptb-test/<uuid>, labs3://ptb-test/<uuid>, gs://ptb-test/<uuid>.
    Only its ``info`` exists (ptb refuses to write where there is no volume); use ``make_volume``
    for a real CloudVolume.
    """
    proto = request.param
    name = f"vol-{uuid.uuid4().hex}"
    if proto == "file":
        path = f"file://{tmp_path / 'volume'}"
    elif proto == "mem":
        path = f"mem://ptb-test/{name}"
    elif proto == "s3":
        path = request.getfixturevalue("s3_server").root + name
    else:
        path = request.getfixturevalue("gcs_server").root + name
    assert_alias_registered(path)
    from cloudfiles import CloudFiles

    CloudFiles(path).put_json("info", VOLUME_INFO)
    yield path
    if "ptb.store.updater" in sys.modules:  # no debounced view write may outlive the test
        sys.modules["ptb.store.updater"].flush()
    if proto == "mem":  # mem:// lives for the whole process: free it
        from cloudfiles import CloudFiles

        cf = CloudFiles(path)
        cf.delete(list(cf.list()))


VOLUME_INFO = {"type": "image", "data_type": "uint8", "num_channels": 1, "scales": [{
    "key": "4_4_40", "encoding": "raw", "resolution": [4, 4, 40], "voxel_offset": [0, 0, 0],
    "size": [64, 64, 16], "chunk_sizes": [[64, 64, 16]]}]}


@pytest.fixture
def make_volume():
    """``make_volume(cloudpath, commit_provenance=False) -> CloudVolume``: a real small image volume.

    uint8, 64x64x16 voxels of 4x4x40 nm, info committed (and the default provenance file when
    asked). Works on all four protocols, gs:// on the emulator included.
    """
    def make(cloudpath: str, commit_provenance: bool = False):
        from cloudvolume import CloudVolume

        assert_alias_registered(cloudpath)
        info = CloudVolume.create_new_info(1, "image", "uint8", "raw", [4, 4, 40], [0, 0, 0], [64, 64, 16])
        vol = CloudVolume(cloudpath, info=info, progress=False)
        vol.commit_info()
        if commit_provenance:
            vol.commit_provenance()
        return vol

    return make


@pytest.fixture
def fast_retries():
    """Make CloudFiles/boto/google give up at once: for tests that stop a server on purpose.

    Without it, one call against a stopped server takes minutes (cloud-files retries 7 times
    with backoff, botocore and google-api-core retry underneath). See servers.fast_failures.
    """
    with fast_failures():
        yield


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real git repository (git CLI): branch ``main``, one commit of ``pipeline.py``.

    Its remote ``origin`` is ``GIT_REMOTE``, which embeds the credential ``SECRETTOKEN`` that
    must never reach a volume.
    """
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.name", "Test Author")
    _git(repo, "config", "user.email", "author@example.org")
    (repo / "pipeline.py").write_text("def step(x):\n    return x + 1\n")
    _git(repo, "add", "pipeline.py")
    _git(repo, "commit", "-q", "-m", "first step")
    _git(repo, "remote", "add", "origin", GIT_REMOTE)
    return repo


@pytest.fixture(autouse=True)
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test spools to its own directory (PTB_SPOOL_DIR), never to ~/.cache/ptb. Not created."""
    path = tmp_path / "spool"
    monkeypatch.setenv("PTB_SPOOL_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def ptb_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test keeps ptb's index in its own directory (PTB_CACHE_DIR), never in ~/.cache/ptb. Not created."""
    path = tmp_path / "ptb-cache"
    monkeypatch.setenv("PTB_CACHE_DIR", str(path))
    return path


@pytest.fixture
def legacy_volume(tmp_path: Path) -> str:
    """A file:// volume as provenance-toolbox 0.1.x left it (tests/volumes.py)."""
    import volumes

    path = f"file://{tmp_path / 'legacy'}"
    volumes.make_legacy_volume(path)
    return path


@pytest.fixture
def foreign_volume(tmp_path: Path) -> str:
    """A 0.1.x volume that igneous and people have also written to."""
    import volumes

    path = f"file://{tmp_path / 'foreign'}"
    volumes.make_legacy_volume(path)
    volumes.add_foreign_entries(path)
    return path


@pytest.fixture(scope="session")
def toolbox_015(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real provenance-toolbox 0.1.5 from the package index, installed into a session temp dir.

    Run programs under it with ``oldtoolbox.run("0.1.5", toolbox_015, ...)``. Nothing goes to
    ``~`` (no pip cache) or elsewhere in ``/tmp`` (pip's temporary files stay in the session dir).
    If the package index cannot be reached, the tests that need it fail: they never skip.
    """
    import oldtoolbox

    try:
        return oldtoolbox.install(tmp_path_factory.mktemp("toolbox-0.1.5"), tmp_path_factory.mktemp("pip-scratch"))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"provenance-toolbox 0.1.5 is needed from the package index: {exc}", pytrace=False)
