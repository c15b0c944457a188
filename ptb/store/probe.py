"""Errors that retrying cannot fix, found up front with one direct request.

CloudFiles retries every failing call seven times with a backoff of up to a
minute and offers no public knob to stop it, so a wrong key pair, a missing
bucket or missing Google credentials took 20 s to minutes to say so. Once per
volume and process, before anything is written, ``check`` asks the store
itself, with the official client, no retries and short timeouts: refused
access (401/403), a bucket that does not exist, no credentials, and an
endpoint that does not answer raise ``VolumeUnavailableError`` within about
``TIMEOUT`` seconds. Anything else (429, 5xx, an answer we do not know) is
left to CloudFiles, which retries it.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Optional, Set

from ..errors import VolumeUnavailableError

__all__ = ["check", "TIMEOUT"]

TIMEOUT = 3.0          # seconds per direct request (connect and read)
_checked: Set[str] = set()


def check(cloudpath: str, secrets: Any = None) -> None:
    """Raise ``VolumeUnavailableError`` if ``cloudpath`` cannot be used whatever the retries; cached when fine."""
    if cloudpath in _checked:
        return
    from cloudfiles import paths

    where = paths.extract(cloudpath)
    if where.protocol == "s3":
        _s3(cloudpath, where, secrets)
    elif where.protocol == "gs":
        _gs(cloudpath, where, secrets)
    if len(_checked) > 1024:
        _checked.clear()
    _checked.add(cloudpath)


def _refused(cloudpath: str, why: str) -> VolumeUnavailableError:
    return VolumeUnavailableError(f"cannot use {cloudpath}: {why}. Nothing was written.")


def _key(where: Any, name: str) -> str:
    return "/".join(p for p in (str(where.path or "").strip("/"), name) if p)


def _s3(cloudpath: str, where: Any, secrets: Any) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    from cloudfiles.secrets import aws_credentials

    creds = secrets if isinstance(secrets, dict) else aws_credentials(where.bucket, where.alias or "s3")
    config = Config(connect_timeout=TIMEOUT, read_timeout=TIMEOUT, retries={"max_attempts": 1, "mode": "standard"},
                    **({"request_checksum_calculation": "when_required"} if where.host else {}))
    client = boto3.client(
        "s3", aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=creds.get("AWS_SESSION_TOKEN") or None,
        region_name=creds.get("AWS_DEFAULT_REGION", "us-east-1"), endpoint_url=where.host or None, config=config)
    try:
        client.head_object(Bucket=where.bucket, Key=_key(where, "info"))
        return
    except NoCredentialsError:
        raise _refused(cloudpath, "no AWS credentials were found (a secret file or AWS_* variables)") from None
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code")
        if status in (401, 403):
            raise _refused(cloudpath, f"access refused ({code or status}): check the key pair and its "
                                      f"permissions on bucket {where.bucket!r}") from None
        if status != 404:
            return              # 429, 5xx: CloudFiles retries those
    except BotoCoreError as exc:     # no answer at all: connection refused, timed out, unknown host
        raise _refused(cloudpath, f"the S3 endpoint does not answer ({exc})") from None
    try:
        client.head_bucket(Bucket=where.bucket)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            raise _refused(cloudpath, f"bucket {where.bucket!r} does not exist") from None
    except BotoCoreError:
        pass


def _gs(cloudpath: str, where: Any, secrets: Any) -> None:
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import RefreshError

    client = _gs_client(cloudpath, where, secrets)
    try:
        bucket = client.bucket(where.bucket)
        if bucket.blob(_key(where, "info")).exists(timeout=TIMEOUT, retry=None):
            return
        if not bucket.exists(timeout=TIMEOUT, retry=None):
            raise _refused(cloudpath, f"bucket {where.bucket!r} does not exist")
    except (gexc.Forbidden, gexc.Unauthorized) as exc:
        raise _refused(cloudpath, f"access refused ({exc.code}): check the Google credentials and their "
                                  f"permissions on bucket {where.bucket!r}") from None
    except gexc.NotFound:
        raise _refused(cloudpath, f"bucket {where.bucket!r} does not exist") from None
    except gexc.GoogleAPICallError:
        return              # 429, 5xx: CloudFiles retries those
    except RefreshError as exc:
        raise _refused(cloudpath, f"the Google credentials are refused ({exc})") from None
    except OSError as exc:  # no answer at all (requests' connection errors and timeouts are OSErrors)
        raise _refused(cloudpath, f"Google Cloud Storage does not answer ({exc})") from None


def _gs_client(cloudpath: str, where: Any, secrets: Any) -> Any:
    """A storage client with the credentials CloudFiles would use; found within ``TIMEOUT`` or refused."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client()        # an emulator needs no credentials
    from cloudfiles.secrets import google_credentials

    project, creds = google_credentials(where.bucket)
    if isinstance(secrets, dict):
        from google.oauth2 import service_account

        creds, project = service_account.Credentials.from_service_account_info(secrets), secrets.get("project_id")
    if creds is None:
        creds, project = _default_credentials(cloudpath, project)
    return storage.Client(credentials=creds, project=project)


def _default_credentials(cloudpath: str, project: Optional[str]) -> Any:
    """``google.auth.default()``, bounded: off Google Cloud it probes the metadata server with retries."""
    found: dict = {}

    def look() -> None:
        try:
            import google.auth

            found["creds"], found["project"] = google.auth.default()
        except Exception as exc:
            found["error"] = exc

    thread = threading.Thread(target=look, name="ptb-google-auth", daemon=True)
    thread.start()
    thread.join(TIMEOUT + 1.0)
    if "creds" not in found:
        raise _refused(cloudpath, "no Google credentials were found (a google-secret.json, "
                                  "GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`)")
    return found["creds"], project or found.get("project")
