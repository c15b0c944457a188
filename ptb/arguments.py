"""What the fronts are given, checked before any run starts: the texts, parameter names, volumes."""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple, Union

from .errors import InvalidInputError


def check_texts(description: Any, motivation: Any, result: Any) -> None:
    """Refuse (``InvalidInputError``) a description, motivation or result a run cannot record."""
    if not isinstance(description, str) or not description.strip():
        raise InvalidInputError("a documented run needs a description (a non-empty str)")
    if motivation is not None and not isinstance(motivation, str):
        raise InvalidInputError(f"motivation must be a str, not {type(motivation).__name__}")
    if result is not None and not (isinstance(result, str) or callable(result)):
        raise InvalidInputError("result must be a str or a callable applied to the return value")


def names(value: Union[str, Sequence[str]], what: str) -> Tuple[str, ...]:
    """Parameter names given as a list or as one string (``"bbox, mip"``)."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    if not all(isinstance(n, str) and n for n in items):
        raise InvalidInputError(f"{what} must name parameters (str), not {value!r}")
    return tuple(items)


def is_parameter_name(target: Any) -> bool:
    """Whether a target names a parameter (``"dst"``), not a volume: a cloudpath contains ``://`` and a
    local path a ``/`` (``./vol``, ``/data/vol``), neither of which a Python name can hold."""
    return isinstance(target, str) and target.isidentifier()


def targets(volume: Any) -> List[Any]:
    """``volume`` as a non-empty list of targets (a CloudVolume, a cloudpath, a parameter name, or a list)."""
    items = list(volume) if isinstance(volume, (list, tuple)) else [volume]
    if not items:
        raise InvalidInputError("no volume given: pass a CloudVolume, a cloudpath, a list of them or a parameter name")
    return items
