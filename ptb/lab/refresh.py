"""Bringing the index up to date with volumes: a listing each, and a GET only for what is new.

For each volume: the version of its ``provenance`` view (a ``stat`` on
``file://``, a HEAD on object stores), and the listing of its journal and
segments (``tail.poll``). Unchanged, it answers from its digest. Changed, the
new objects (and the view, if it changed) are read, the volume's history is
assembled from the records the index holds (``ptb.read.history.assemble``,
the same history ``ptb log`` reads), and its digest is made again. Volumes are
done in a bounded thread pool: the work is I/O-bound.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import BUGS, CorruptProvenanceError, ProvenanceError, VolumeUnavailableError
from ..read.history import assemble
from ..records import content_hash
from ..store import journal
from ..store.provfile import PROVENANCE, read_parsed
from ..store.volume import Volume
from . import digest as digests
from .index import Index, IndexBusyError
from .tail import Delta, poll

THREADS = 16
ABSENT = "absent"


@dataclasses.dataclass(frozen=True)
class Found:
    """A volume found under a prefix, and what its listing already said (None: not listed)."""

    cloudpath: str
    has_ptb: Optional[bool] = None
    has_provenance: Optional[bool] = None


def view_token(vol: Volume, present: Optional[bool]) -> Optional[str]:
    """What tells the ``provenance`` file changed, without reading it; None where only its bytes can say."""
    if present is False:
        return ABSENT
    if vol.protocol == "file":
        stamp = vol.stamp()
        return ABSENT if stamp is None else json.dumps(stamp)
    if vol.protocol not in ("gs", "s3"):
        return None
    try:
        head = vol.cf.head(PROVENANCE)
    except BUGS:
        raise
    except Exception as exc:
        raise VolumeUnavailableError(f"cannot reach {vol.cloudpath}: {exc}") from exc
    if head is None:
        return ABSENT
    fields = {k.lower(): str(v) for k, v in dict(head).items()
              if k.lower() in ("etag", "x-goog-generation", "content-length", "last-modified")}
    return json.dumps(fields, sort_keys=True)


def _read_view(vol: Volume, token: Optional[str]) -> Tuple[str, Dict[str, Any]]:
    """(token, {"prov": dict or None, "problem": text or None}): the view read again."""
    data: Optional[bytes] = None

    def read() -> Tuple[Optional[bytes], None]:
        nonlocal data
        data = vol.get_bytes(PROVENANCE)
        return data, None

    try:
        prov, _ = read_parsed(read, vol.cloudpath)
        view: Dict[str, Any] = {"prov": prov, "problem": None}
    except CorruptProvenanceError as exc:
        view = {"prov": None, "problem": str(exc)}
    if token is None:           # mem:// and others: the bytes are the version
        token = ABSENT if data is None else content_hash(data.decode("utf-8", "replace"))
    return token, view


def refresh_one(found: Found, index: Index) -> Dict[str, Any]:
    """The digest of one volume, reading only what changed since the index last saw it."""
    vol = Volume.resolve(found.cloudpath)
    old_token, old_digest = index.state(vol.cloudpath)
    token = view_token(vol, found.has_provenance)
    view = None
    if token is None or token != old_token:
        token, view = _read_view(vol, token)
        if token == old_token and index.view(vol.cloudpath) is not None:
            view = None
    known = index.known(vol.cloudpath)
    delta = Delta() if found.has_ptb is False and not known.keys else poll(vol, known)
    cached = _valid(old_digest)
    if cached is not None and view is None and not delta.changed:
        return cached
    index.save(vol.cloudpath, delta, (token, json.dumps(view)) if view is not None else None, {}, None)
    return _rebuild(vol, index, token)


def _valid(text: Optional[str]) -> Optional[Dict[str, Any]]:
    """A stored digest this ptb can trust, or None."""
    if not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) and found.get("v") == digests.VERSION else None


def _rebuild(vol: Volume, index: Index, token: str) -> Dict[str, Any]:
    """Assemble the history from the index (reading only missing environment files) and save its digest."""
    try:
        view = json.loads(index.view(vol.cloudpath) or "null") or {"prov": None, "problem": None}
    except ValueError:
        view = {"prov": None, "problem": None}
    cached_envs = index.envs(vol.cloudpath, token)
    new_envs: Dict[str, Tuple[Any, Optional[str]]] = {}

    def read_envs(files: List[str]) -> Dict[str, Any]:
        wanted = sorted(set(files))
        fetched = journal.read_envs(vol, [f for f in wanted if f not in cached_envs])
        for key, content in fetched.items():
            new_envs[key] = (content, None if key.startswith(journal.ENV) else token)
        return {f: cached_envs.get(f, fetched.get(f)) for f in wanted if f in cached_envs or f in fetched}

    problems = [view["problem"]] if view.get("problem") else []
    problems += [f"skipping {vol.cloudpath}/{key}: {why}" for key, why in index.problems(vol.cloudpath).items()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = journal.records_of(vol, index.envelopes(vol.cloudpath))
        prov: Dict[str, Any] = view["prov"] if isinstance(view.get("prov"), dict) else {}
        h = assemble(vol.cloudpath, prov, records, read_envs, list(problems))
    problems += [str(w.message) for w in caught if str(w.message) not in problems]
    made = digests.digest(h, problems)
    index.save(vol.cloudpath, None, None, new_envs, made)
    return made


def unreadable(cloudpath: str, exc: BaseException) -> Dict[str, Any]:
    """The row of a volume that could not be read: the query goes on with the others."""
    return {"v": digests.VERSION, "volume": cloudpath, "error": str(exc), "documented": False, "processes": [],
            "envs": [], "notes": 0, "foreign": 0, "last": None,
            "check": {"ok": False, "problems": [f"cannot be read: {exc}"]}}


def refresh(found: Sequence[Found], index: Index, threads: int = THREADS,
            progress: Optional[Callable[[], None]] = None) -> List[Dict[str, Any]]:
    """The digests of ``found`` volumes, in order, ``threads`` at a time; an unreadable one gets an error row."""
    def one(item: Found) -> Dict[str, Any]:
        try:
            return refresh_one(item, index)
        except IndexBusyError:
            raise
        except (ProvenanceError, OSError, ValueError) as exc:
            return unreadable(item.cloudpath, exc)
        finally:
            if progress is not None:
                progress()

    if threads <= 1 or len(found) <= 1:
        return [one(item) for item in found]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(threads, len(found))) as pool:
        return list(pool.map(one, found))
