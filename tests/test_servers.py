"""The test servers and protocol fixtures really work, so other tests can trust them."""
from __future__ import annotations

import socket
import time

import pytest
from servers import FakeGCS, ServerStartError


def test_cloudfiles_roundtrip(cloudpath: str) -> None:
    from cloudfiles import CloudFiles

    cf = CloudFiles(cloudpath)
    assert list(cf.list("ptb/")) == [] and list(cf.list("other")) == []  # fresh and unique
    cf.put("ptb/journal/a.json", b'{"a": 1}', compress=None)
    cf.put_json("ptb/journal/b.json", {"b": 2})
    cf.put("other", b"x", compress="gzip")
    assert cf.get("ptb/journal/a.json") == b'{"a": 1}'
    assert cf.get_json("ptb/journal/b.json") == {"b": 2}
    assert cf.get("other") == b"x"
    assert cf.get("missing") is None
    assert cf.get_json("missing") is None
    assert cf.size("missing") is None  # an existence test that also works on the GCS emulator
    assert sorted(cf.list("ptb/journal/")) == ["ptb/journal/a.json", "ptb/journal/b.json"]
    assert sorted(cf.list("ptb/")) + list(cf.list("other")) == ["ptb/journal/a.json", "ptb/journal/b.json", "other"]


def test_cloudvolume_info_and_provenance(cloudpath: str, make_volume) -> None:
    from cloudvolume import CloudVolume

    vol = make_volume(cloudpath)
    again = CloudVolume(cloudpath)
    assert again.info == vol.info
    assert again.cloudpath == cloudpath
    again.provenance.description = "written by a test"
    again.commit_provenance()
    assert CloudVolume(cloudpath).provenance.description == "written by a test"


def test_cloudvolume_image_data(cloudpath: str, make_volume) -> None:
    import numpy as np

    vol = make_volume(cloudpath)
    vol[:, :, :] = np.full((64, 64, 16, 1), 7, dtype=np.uint8)
    assert int(vol[0:8, 0:8, 0:2].sum()) == 7 * 8 * 8 * 2


def test_cloudpath_is_unique(cloudpath: str, request: pytest.FixtureRequest) -> None:
    other = f"file://{request.getfixturevalue('tmp_path')}/volume"
    assert cloudpath.split("://")[0] in ("file", "mem", "labs3", "gs")
    if not cloudpath.startswith("file://"):
        assert cloudpath != other and "vol-" in cloudpath


@pytest.mark.s3
def test_s3_alias_is_registered(s3_server) -> None:
    import cloudfiles.paths
    from cloudfiles import CloudFiles

    assert cloudfiles.paths.ALIASES["labs3"] == f"s3://{s3_server.endpoint}/"
    path = cloudfiles.paths.extract("labs3://ptb-test/x")
    assert (path.protocol, path.host, path.bucket) == ("s3", s3_server.endpoint, "ptb-test")
    # The trap the fixture guards against: an unknown alias silently becomes a local path.
    assert CloudFiles("nosuchalias://ptb-test/x").cloudpath.startswith("file://")


def test_subprocesses_see_the_alias(s3_server) -> None:
    """The ptb CLI run as a subprocess must reach labs3:// too (aliases.json in CLOUD_FILES_DIR)."""
    import subprocess
    import sys

    from cloudfiles import CloudFiles

    CloudFiles(s3_server.root + "subproc").put("k", b"v", compress=None)
    code = "from cloudfiles import CloudFiles; print(CloudFiles('labs3://ptb-test/subproc').get('k'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().endswith("b'v'"), out.stderr


@pytest.mark.s3
def test_s3_enforces_credentials(s3_server) -> None:
    """Anonymous requests are refused, so passing tests prove CloudFiles sends the credentials."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    anon = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))
    with pytest.raises(anon.exceptions.ClientError, match="AccessDenied|Access Denied"):
        anon.put_object(Bucket=s3_server.bucket, Key="anon", Body=b"x")


@pytest.mark.gcs
def test_gcs_emulator_has_no_batch_api(gcs_server, fast_retries) -> None:
    """Pins down what ptb's storage layer must avoid on gs:// against the emulator.

    CloudFiles ``exists()`` and ``delete()`` always go through GCS's batch endpoint, which
    fake-gcs-server does not implement; single-object google-cloud-storage calls work.
    (Without ``fast_retries`` each failing call takes ~45 s: cloud-files retries it 7 times.)
    """
    from cloudfiles import CloudFiles
    from google.cloud import storage

    cf = CloudFiles(gcs_server.root + "batch")
    cf.put("k", b"v", compress=None)
    with pytest.raises(ValueError, match="multi-part"):
        cf.exists("k")
    with pytest.raises(ValueError, match="multi-part"):
        cf.delete("k")
    assert cf.size("k") == 1 and cf.size("absent") is None
    bucket = storage.Client().bucket(gcs_server.bucket)
    bucket.delete_blob("batch/k")
    assert cf.get("k") is None


@pytest.mark.parametrize("kind", [pytest.param("s3", marks=pytest.mark.s3),
                                  pytest.param("gs", marks=pytest.mark.gcs)])
def test_restart_keeps_data(kind: str, request: pytest.FixtureRequest) -> None:
    from cloudfiles import CloudFiles

    server = request.getfixturevalue("s3_server" if kind == "s3" else "gcs_server")
    cf = CloudFiles(server.root + "restart")
    cf.put_json("kept.json", {"kept": True})
    endpoint = server.endpoint
    server.restart()
    assert server.endpoint == endpoint  # same ports: aliases and env stay valid
    assert CloudFiles(server.root + "restart").get_json("kept.json") == {"kept": True}


@pytest.mark.parametrize("kind", [pytest.param("s3", marks=pytest.mark.s3),
                                  pytest.param("gs", marks=pytest.mark.gcs)])
def test_stopped_server_fails_fast(kind: str, request: pytest.FixtureRequest, fast_retries) -> None:
    from botocore.exceptions import BotoCoreError
    from cloudfiles import CloudFiles

    server = request.getfixturevalue("s3_server" if kind == "s3" else "gcs_server")
    cf = CloudFiles(server.root + "down")
    with server.stopped():
        for call in (lambda: cf.put("k", b"v", compress=None), lambda: cf.get("k"), lambda: list(cf.list())):
            t0 = time.monotonic()
            with pytest.raises((OSError, BotoCoreError)):
                call()
            assert time.monotonic() - t0 < 10
    cf.put("k", b"v", compress=None)  # and back up after the block
    assert cf.get("k") == b"v"


def test_start_failure_reports_log_tail(tmp_path) -> None:
    """A server that cannot start fails quickly with its own words in the error."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))  # bound, not listening: the probe is refused at once
        server = FakeGCS(startup_timeout=20, port=busy.getsockname()[1])
        with pytest.raises(ServerStartError, match="address already in use") as err:
            server.start(tmp_path / "gcs")
        assert "last" in str(err.value) and str(server.port) in str(err.value)
    assert not server.running


def test_git_repo_fixture(git_repo) -> None:
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=git_repo, capture_output=True, text=True, check=True).stdout.strip()

    assert git("rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git("rev-list", "--count", "HEAD") == "1"
    assert "SECRETTOKEN" in git("remote", "get-url", "origin")
    assert git("status", "--porcelain") == ""


def test_spool_dir_is_private(spool_dir, tmp_path) -> None:
    import os

    assert os.environ["PTB_SPOOL_DIR"] == str(spool_dir)
    assert spool_dir.parent == tmp_path


@pytest.mark.s3
def test_seaweedfs_is_ready_for_objects_and_leaves_nothing_in_tmp(tmp_path) -> None:
    """Ready means an object round trip works (right after a restart too); its logs and sockets
    stay in its run directory, or are removed when it stops."""
    import glob
    import os

    from servers import SeaweedS3

    before = set(glob.glob("/tmp/weed*"))
    server = SeaweedS3().start(tmp_path / "weed")
    try:
        for _ in range(2):
            c = server.client(retries={"max_attempts": 1})
            c.put_object(Bucket=server.bucket, Key="k", Body=b"v")
            assert c.get_object(Bucket=server.bucket, Key="k")["Body"].read() == b"v"
            server.restart()
    finally:
        server.stop()
    assert any(name.startswith("weed.") for name in os.listdir(tmp_path / "weed" / "logs"))
    ports = {q for p in server.ports.values() for q in (p, p + 10000)}
    assert [s for s in glob.glob("/tmp/seaweedfs-*.sock") if int(s.rsplit("-", 1)[1][:-5]) in ports] == []
    mine = [f for f in set(glob.glob("/tmp/weed*")) - before
            if str(tmp_path) in open(f, errors="replace").read(4096)]
    assert mine == []
