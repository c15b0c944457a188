"""Following a volume's journal: list it, fetch only the objects not seen before.

Records enter a volume as journal objects (``ptb/journal/<rid>.json``), written
once and never changed; packers later fold them into segments
(``ptb/segments/``) and delete them. A reader that remembers which objects it
has read, and which records each held, needs only a listing to know nothing
changed, and one GET per new object otherwise.

A new segment is the one case where a GET could re-read the whole history (a
packer merging every segment into one). It is skipped when it can only hold
what the reader already has: when the journal objects and segments that
vanished since the last listing hold records whose canonical texts add up to
exactly the new segment's size (a segment is their canonical JSON, see
``ptb.store.journal._pack``). Anything else (two new segments, a size that
does not add up, records packed between two listings) is fetched.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from ..errors import BUGS, VolumeUnavailableError
from ..records import canonical_json
from ..store.journal import JOURNAL, SEGMENTS, envelopes_of
from ..store.volume import Volume

_EMPTY_SEGMENT = len(b'{"records":[],"v":1}')
_SEGMENT_RETRIES = 5


def text_size(env: Dict[str, Any]) -> int:
    """The bytes of an envelope's canonical text, as a segment holds it."""
    return len(canonical_json(env).encode("utf-8", "surrogatepass"))


def segment_size(sizes: Iterable[int]) -> int:
    """The bytes of a segment holding envelopes of these canonical sizes."""
    sizes = list(sizes)
    return _EMPTY_SEGMENT + sum(sizes) + max(len(sizes) - 1, 0)


@dataclasses.dataclass
class Known:
    """What a reader has read of one volume: the keys of the objects read, and how to ask more.

    ``rids`` gives the record ids each of some objects held, ``sizes`` the
    canonical text size of some records; both are asked only when objects
    vanished (a packer ran), so an unchanged volume costs its listing alone.
    """

    keys: Set[str] = dataclasses.field(default_factory=set)
    rids: Callable[[List[str]], Dict[str, Tuple[str, ...]]] = lambda keys: {}
    sizes: Callable[[List[str]], Dict[str, int]] = lambda rids: {}


@dataclasses.dataclass
class Delta:
    """What one poll found: the objects new since ``Known`` (key -> rids), those gone, the new envelopes.

    ``journalled`` are envelopes from journal objects (they win over a
    segment's copy of the same rid, as in ``journal.read_envelopes``);
    ``packed`` those from segments. ``fetched`` are the keys read,
    ``skipped`` the new segments known by their size, ``problems`` objects
    that are not ptb records, by key.
    """

    objects: Dict[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    gone: List[str] = dataclasses.field(default_factory=list)
    journalled: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    packed: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    fetched: List[str] = dataclasses.field(default_factory=list)
    skipped: List[str] = dataclasses.field(default_factory=list)
    problems: Dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.objects or self.gone)


def list_segments(vol: Volume) -> Dict[str, int]:
    """Segment keys and their sizes, in one listing (a ``stat`` each on ``file://``)."""
    if vol.protocol == "file":
        out = {}
        for key in vol.list(SEGMENTS):
            try:
                out[key] = os.stat(vol.local_path(key)).st_size
            except FileNotFoundError:       # merged away since the listing
                pass
        return out
    try:
        listed = list(vol.cf.list(prefix=SEGMENTS, flat=True, size=True))
    except FileNotFoundError:
        return {}
    except BUGS:
        raise
    except Exception as exc:
        raise VolumeUnavailableError(f"cannot list {vol.cloudpath}/{SEGMENTS}: {exc}") from exc
    return {key: int(size) for key, size in listed
            if key.endswith(".json") and not os.path.basename(key).startswith(".")}


def _parse(key: str, data: Optional[bytes]) -> Tuple[List[Dict[str, Any]], str]:
    """The envelopes of one object, and what is wrong with it ('' when nothing)."""
    try:
        obj = json.loads(data or b"")
    except ValueError:
        return [], "not JSON"
    except RecursionError:
        return [], "nested too deeply to read"
    envs = envelopes_of(obj)
    return envs, "" if envs else "not a ptb record"


def poll(vol: Volume, known: Known) -> Delta:
    """List the volume's journal and segments, and read only the objects ``known`` does not hold.

    The journal is listed before the segments: a packer deletes journal
    objects only once the segment holding them is written, so a record is
    always in one of the two listings.
    """
    journal_keys = vol.list(JOURNAL)
    segments = list_segments(vol)
    listed = set(journal_keys) | set(segments)
    delta = Delta(gone=sorted(k for k in known.keys if k not in listed))

    new_journal = [k for k in journal_keys if k not in known.keys]
    for key, data in vol.get_many(new_journal).items():
        if data is None:            # packed since the listing: its segment is read below or next time
            continue
        envs, problem = _parse(key, data)
        delta.fetched.append(key)
        delta.objects[key] = tuple(e["rid"] for e in envs)
        delta.journalled.extend(envs)
        if problem:
            delta.problems[key] = problem

    new_segments = [k for k in segments if k not in known.keys]
    if len(new_segments) == 1 and delta.gone:
        held = _held_by(delta.gone, known)
        sizes = known.sizes(held) if held else {}
        if held and len(sizes) == len(held) and segment_size(sizes.values()) == segments[new_segments[0]]:
            delta.objects[new_segments[0]] = tuple(held)
            delta.skipped.append(new_segments[0])
            new_segments = []
    _read_segments(vol, new_segments, delta, known.keys)
    return delta


def _held_by(keys: List[str], known: Known) -> List[str]:
    """The rids the objects ``keys`` held, sorted as a segment holds them; [] when one of them held none."""
    held = known.rids(keys)
    if any(not held.get(key) for key in keys):
        return []
    return sorted({rid for rids in held.values() for rid in rids})


def _read_segments(vol: Volume, keys: List[str], delta: Delta, known_keys: Set[str]) -> None:
    """Fetch new segments; one that vanished since the listing was merged into a newer one: list again."""
    for attempt in range(_SEGMENT_RETRIES):
        if not keys:
            return
        missing = []
        for key, data in vol.get_many(keys).items():
            if data is None:
                missing.append(key)
                continue
            envs, problem = _parse(key, data)
            delta.fetched.append(key)
            delta.objects[key] = tuple(e["rid"] for e in envs)
            delta.packed.extend(envs)
            if problem:
                delta.problems[key] = "not a readable segment"
        if not missing:
            return
        for key in missing:
            delta.objects.pop(key, None)
        time.sleep(0.05 * 2 ** attempt)
        relisted = list_segments(vol)
        keys = [k for k in relisted if k not in delta.objects and k not in known_keys]
    raise VolumeUnavailableError(f"segments of {vol.cloudpath} kept vanishing while being read "
                                 f"(packers racing?); try again")
