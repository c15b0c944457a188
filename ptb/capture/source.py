"""The source of a function or notebook cell, so code outside git is recorded too."""
from __future__ import annotations

import functools
import hashlib
import inspect
from typing import Any, Callable, Dict, Optional, Tuple

from .codeenv import CodeEnv, bounded_text

__all__ = ["SourceEnv", "unwrap"]


def unwrap(func: Any, *, partials: bool = True) -> Any:
    """The function whose code runs: through methods, class- and staticmethods, ``__wrapped__`` chains
    and (when ``partials``) ``functools.partial``; a partial's own signature is what binds a call to it."""
    target = getattr(func, "__func__", func)            # methods, classmethods, staticmethods
    while partials and isinstance(target, functools.partial):
        target = target.func
    try:
        return inspect.unwrap(target)
    except ValueError:
        return target


class SourceEnv(CodeEnv):
    """The source of a function or notebook cell, so code outside git is recorded too.

    The stored ``source`` is bounded and scrubbed of secrets (``ptb.capture.params.scrub_text``);
    ``sha256`` is the hash of the real, whole source, so the code's identity is kept. A function's
    ``module`` and ``qualname`` are stored apart too (``name`` joins them, which is ambiguous to
    split), so ``ptb reproduce`` can import it again; a cell has neither.
    """

    kind = "Source"

    def __init__(self, name: str, source: str, filename: Optional[str] = None, *,
                 module: Optional[str] = None, qualname: Optional[str] = None):
        self.name = name
        self.source = source
        self.file = filename      # ``filename`` is the content-addressed property
        self.module, self.qualname = module, qualname
        self._stored: Optional[Tuple[str, Dict[str, str]]] = None

    def contents(self) -> Dict[str, Any]:
        if self._stored is None or self._stored[0] is not self.source:   # scrubbed once per source
            from .redact import scrubbed

            data = self.source.encode("utf-8", "replace")
            self._stored = (self.source, {"source": scrubbed(bounded_text(data, len(data), "source")),
                                          "sha256": hashlib.sha256(data).hexdigest()})
        where = {k: v for k, v in (("module", self.module), ("qualname", self.qualname)) if v is not None}
        return {"CodeEnv type": self.kind, "name": self.name, "file": self.file, **where, **self._stored[1]}

    @classmethod
    def from_callable(cls, func: Callable) -> Optional[SourceEnv]:
        """The unwrapped function's source; ``None`` for builtins and code typed at a REPL."""
        target = unwrap(func)
        try:
            source = inspect.getsource(target)
            file = inspect.getsourcefile(target) or inspect.getfile(target)
        except (OSError, TypeError):
            return None
        qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
        qualname = qualname if isinstance(qualname, str) else None
        name = qualname or repr(target)
        module = getattr(target, "__module__", None)
        module = module if isinstance(module, str) else None
        return cls(f"{module}.{name}" if module else name, source, file, module=module, qualname=qualname)

