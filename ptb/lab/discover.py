"""Finding the volumes under a prefix: a directory with ``info``, ``provenance`` or ``ptb/``.

One level at a time (a delimiter listing on object stores), never a flat
listing of everything: a layer holds millions of chunks, and a volume is not
descended into (its ``mesh/`` or ``skeletons/`` have an ``info`` of their
own, but they are part of it). Directories of one level are listed in a
bounded thread pool; hidden ones (``.git``) are skipped, and the depth is
bounded, so a symlink loop ends.
"""
from __future__ import annotations

import concurrent.futures
from typing import Iterable, List, Sequence, Tuple, Union

from ..errors import BUGS, VolumeUnavailableError, warn
from ..store.volume import Volume, as_cloudpath
from .refresh import THREADS, Found

MARKS = ("info", "provenance")
DEPTH = 8


class DiscoveryWarning(UserWarning):
    """A directory under a prefix could not be listed; the others were."""


def _listing(cloudpath: str) -> Tuple[List[str], List[str]]:
    """(files, directories) right under ``cloudpath``, as names (directories without their ``/``)."""
    from cloudfiles import CloudFiles, paths

    where, prefix = cloudpath, ""
    if cloudpath.startswith("mem://"):     # CloudFiles lists the whole mem:// bucket from a path in it: ask the bucket
        parts = paths.extract(cloudpath)
        where, prefix = f"mem://{parts.bucket}", f"{parts.path.strip('/')}/" if parts.path.strip("/") else ""
    try:
        names = list(CloudFiles(where, progress=False).list(prefix=prefix, flat=True))
    except FileNotFoundError:
        return [], []
    except BUGS:
        raise
    except Exception as exc:
        raise VolumeUnavailableError(f"cannot list {cloudpath}: {exc}") from exc
    names = [n[len(prefix):] if n.startswith(prefix) else n for n in names]
    files = [n.rsplit("/", 1)[-1] for n in names if not n.endswith("/")]
    dirs = list(dict.fromkeys(n.rstrip("/").rsplit("/", 1)[-1] for n in names if n.endswith("/")))
    return files, dirs


def _look(cloudpath: str) -> Tuple[str, Union[Found, List[str]]]:
    """A volume, or the subdirectories to look in next."""
    files, dirs = _listing(cloudpath)
    if any(m in files for m in MARKS) or "ptb" in dirs:
        return cloudpath, Found(cloudpath, has_ptb="ptb" in dirs, has_provenance="provenance" in files)
    return cloudpath, [f"{cloudpath}/{d}" for d in sorted(dirs) if d and not d.startswith(".")]


def _normalise(prefix: str) -> str:
    return Volume.resolve(as_cloudpath(str(prefix))).cloudpath


def discover(prefixes: Union[str, Iterable[str]], threads: int = THREADS, depth: int = DEPTH) -> List[Found]:
    """The volumes at or under ``prefixes`` (cloudpaths or local directories), sorted, each once.

    A prefix that cannot be listed raises ``VolumeUnavailableError``; a
    directory under it that cannot be listed is a ``DiscoveryWarning``.
    """
    roots: Sequence[str] = [prefixes] if isinstance(prefixes, str) else list(prefixes)
    frontier = list(dict.fromkeys(_normalise(p) for p in roots))
    top = set(frontier)
    found = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in range(depth + 1):
            if not frontier:
                break
            futures = {pool.submit(_look, path): path for path in frontier}
            frontier = []
            for future in concurrent.futures.as_completed(futures):
                try:
                    path, result = future.result()
                except VolumeUnavailableError as exc:
                    if futures[future] in top:
                        raise
                    warn(str(exc), DiscoveryWarning)
                    continue
                if isinstance(result, Found):
                    found[path] = result
                else:
                    frontier.extend(result)
    return [found[p] for p in sorted(found)]
