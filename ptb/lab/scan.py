"""From prefixes to digests: find the volumes, then bring the index up to date with each."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .discover import discover
from .index import Index
from .refresh import THREADS, Found, refresh


def digests_under(prefixes: Union[str, Sequence[str]], cache: bool = True, threads: int = THREADS,
                  progress: Optional[Callable[[int], Callable[[], None]]] = None
                  ) -> Tuple[List[Found], List[Dict[str, Any]]]:
    """The volumes at or under ``prefixes`` and their digests, in the same order.

    ``cache`` False reads every volume in full (an index in memory);
    ``progress(total)`` may return a callable ticked once per volume done.
    """
    found = discover(prefixes, threads)
    index = Index.open(cache)
    try:
        tick = progress(len(found)) if progress is not None and found else None
        return found, refresh(found, index, threads, tick)
    finally:
        index.close()
