"""The one writer: journal records, tell the view, spool what could not be written, replay it later.

Every site that writes records (a run's start, notes and end, the 0.1.x
``addnote`` and ``logprocess``, ``ptb flush``) goes through here, so the rule
"journalled, then published in the ``provenance`` view, else spooled" is
written once. The journal (``journal``) and the view (``updater``) know
nothing of the spool; the spool (``spool``) knows nothing of either.
"""
from __future__ import annotations

from typing import Any, List, Sequence, Set, Tuple

from ..errors import BUGS, VolumeUnavailableError, warn
from ..records import Record, canonical_json
from . import cas, journal, spool, updater
from .view import Entry
from .volume import Volume, dumps

__all__ = ["append", "publish", "write", "write_env", "flush"]


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return f"{type(cause).__name__}: {cause}"


def append(vol: Volume, records: Sequence[Record], *, spool_on_failure: bool = True) -> List[Entry]:
    """Journal ``records`` in one object; returns (rid, record) for each, or [] when they were spooled.

    A record over the size bound raises ``InvalidInputError`` before anything
    is written. A storage failure spools what was not written (with a
    ``SpoolWarning``) when ``spool_on_failure``; otherwise it raises
    ``VolumeUnavailableError``. The view is not told: see ``write``.
    """
    try:
        return journal.append(vol, records)
    except journal.WriteFailed as exc:
        _spool_or_raise(vol, exc, spool_on_failure)
        return []


def publish(vol: Volume, entries: Sequence[Entry], *, chunk: bool = False) -> bool:
    """Tell the ``provenance`` view about journalled entries (a bounded wait, then the background);
    ``chunk``: the end of a chunk run, which ``PTB_VIEW_EVERY`` may leave to the background."""
    return updater.update(vol, entries, chunk=chunk)


def write(vol: Volume, records: Sequence[Record], *, with_entries: Sequence[Entry] = ()) -> List[Entry]:
    """Journal ``records`` (spooling on failure) and publish them, with ``with_entries`` journalled before."""
    written = append(vol, records)
    publish(vol, [*with_entries, *written])
    return written


_envs_written: Set[Tuple[str, str]] = set()
MAX_CACHED = 4096


def write_env(vol: Volume, env: Any, *, spool_on_failure: bool = True) -> str:
    """Store a code environment once, content-addressed; returns its volume-relative path.

    On a storage failure it is spooled when ``spool_on_failure``; otherwise
    ``VolumeUnavailableError`` is raised.
    """
    key = env.filename
    if (vol.cloudpath, key) in _envs_written:
        return key
    try:
        put_env_if_absent(vol, key, env.contents())
    except BUGS:
        raise
    except Exception as exc:
        failed = journal.WriteFailed(f"cannot write {key} to {vol.cloudpath}: {exc}", {key: env.contents()})
        failed.__cause__ = exc
        _spool_or_raise(vol, failed, spool_on_failure)
        return key
    if len(_envs_written) > MAX_CACHED:     # a long-lived process writing to many volumes
        _envs_written.clear()
    _envs_written.add((vol.cloudpath, key))
    return key


def put_env_if_absent(vol: Volume, key: str, contents: Any) -> bool:
    """Create a code-environment file unless it is there; True when this call created it.

    A fleet starting at once writes the same file: on ``gs://`` and ``s3://``
    it is one conditional request, and "already there" (a precondition
    failure) or a rate limit on an object that exists is success, never a
    failed task. Elsewhere, a create-only write (``Volume.put_json_if_absent``).
    """
    if vol.protocol not in ("gs", "s3"):
        return vol.put_json_if_absent(key, contents)
    try:
        return cas.versioned(vol, vol.checked(key)).write(dumps(contents).encode("utf-8"), cas.ABSENT)
    except cas.Busy:
        if vol.get_bytes(key) is None:
            raise
        return False


def _spool_or_raise(vol: Volume, exc: journal.WriteFailed, spool_on_failure: bool) -> None:
    """What did not reach the volume goes to the spool (with a ``SpoolWarning``), or the failure is raised."""
    if not spool_on_failure:
        raise VolumeUnavailableError(str(exc)) from exc.__cause__
    spool.spool(vol.cloudpath, exc.unwritten, reason=_reason(exc))


def flush(progress: bool = False) -> Tuple[int, int]:
    """Upload everything spooled; returns (records uploaded, records still spooled).

    A volume that is still unreachable keeps its records for the next flush.
    Cloudpaths that use a CloudFiles alias need the alias registered first.
    """
    from tqdm import tqdm

    uploaded = remaining = 0
    for cloudpath, directory in spool.volumes():
        vol = Volume.resolve(cloudpath)
        files = spool.objects(directory)
        records = []
        for done, path in enumerate(tqdm(files, desc=f"Flushing {cloudpath}", disable=not progress)):
            key, obj = spool.load(path)
            try:
                if key.startswith(journal.ENV):
                    put_env_if_absent(vol, key, obj)
                else:
                    vol.put_json(key, canonical_json(obj))
            except Exception as exc:
                remaining += sum(map(spool.records_in_file, files[done:]))
                warn(f"{cloudpath} is still not writable ({exc}); records stay in {directory}",
                     spool.SpoolWarning, stacklevel=2)
                break
            if key.startswith(journal.JOURNAL):
                records.extend(journal.entries_of(obj))
            path.unlink()
            uploaded += spool.records_in(obj)
        else:
            spool.release(directory)
        if records:     # their ids may sit below the view's mark by now: the view is rebuilt, exactly
            updater.rebuild_now(vol)
    return uploaded, remaining
