"""Errors that retrying cannot fix are said within 5 s, before anything runs or is written.

CloudFiles retries every failing call 7 times with backoff (20 s to minutes). A wrong key
pair, a missing bucket and missing Google credentials are found with one direct request
instead (``ptb.store.probe``). Real servers (SeaweedFS, fake-gcs-server); nothing mocked.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import ptb
from ptb.decorate import provenance
from ptb.errors import VolumeUnavailableError

BAD_ALIAS = "labs3bad"


@pytest.fixture(scope="module")
def s3_bad_keys(s3_server, cloud_home: Path):
    """``labs3bad://<bucket>/``: the test server, seen with a key pair it does not know."""
    import cloudfiles.paths

    (cloud_home / "secrets" / f"{BAD_ALIAS}-secret.json").write_text(json.dumps({
        "AWS_ACCESS_KEY_ID": "NOSUCHKEY", "AWS_SECRET_ACCESS_KEY": "wrong", "AWS_DEFAULT_REGION": s3_server.region}))
    cloudfiles.paths.add_alias(BAD_ALIAS, f"s3://{s3_server.endpoint}/")
    yield f"{BAD_ALIAS}://{s3_server.bucket}/"
    cloudfiles.paths.remove_alias(BAD_ALIAS)


def _fails_fast(cloudpath: str, match: str) -> None:
    ran = []

    @provenance(cloudpath, "a step on a volume that cannot be used")
    def step() -> None:
        ran.append(1)

    for call in (step, lambda: ptb.addgeneric(cloudpath, "a note")):
        started = time.monotonic()
        with pytest.raises(VolumeUnavailableError, match=match):
            call()
        assert time.monotonic() - started < 5
    assert ran == []


@pytest.mark.s3
def test_a_wrong_s3_key_pair_fails_fast(s3_bad_keys):
    _fails_fast(f"{s3_bad_keys}vol-{uuid.uuid4().hex}", "access refused")


@pytest.mark.s3
def test_a_missing_s3_bucket_fails_fast(s3_server):
    _fails_fast(f"labs3://no-such-bucket-{uuid.uuid4().hex[:8]}/vol", "does not exist")


@pytest.mark.gcs
def test_a_missing_gcs_bucket_fails_fast(gcs_server):
    _fails_fast(f"gs://no-such-bucket-{uuid.uuid4().hex[:8]}/vol", "does not exist")


def test_gcs_without_credentials_fails_fast(tmp_path: Path):
    """No secret file, no GOOGLE_APPLICATION_CREDENTIALS, no gcloud login, not on Google Cloud."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "STORAGE_EMULATOR", "CLOUD_", "GCE_"))}
    env.update(HOME=str(tmp_path), CLOUD_FILES_DIR=str(tmp_path / "cf"), CLOUD_VOLUME_DIR=str(tmp_path / "cv"),
               PTB_SPOOL_DIR=str(tmp_path / "spool"), GCE_METADATA_HOST="127.0.0.1:9",
               GCE_METADATA_IP="127.0.0.1:9")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "ptb.cli", "note", "gs://some-bucket/vol", "--generic", "hi"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    took = time.monotonic() - started
    assert done.returncode != 0
    assert "no Google credentials" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert took < 8, took       # 5 s, plus starting Python and importing the clients
    assert not (tmp_path / "spool").exists()     # refused, not spooled: no user code to protect


@pytest.mark.s3
def test_an_s3_endpoint_that_does_not_answer_fails_fast(s3_server):
    """Nothing listens there: connection refused is said at once, not after CloudFiles' retries."""
    import socket

    import cloudfiles.paths

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]            # free, and nothing will listen on it
    cloudfiles.paths.add_alias("labs3dead", f"s3://http://127.0.0.1:{port}/")
    try:
        _fails_fast(f"labs3dead://{s3_server.bucket}/vol-{uuid.uuid4().hex}", "does not answer")
    finally:
        cloudfiles.paths.remove_alias("labs3dead")
