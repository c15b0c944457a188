"""The secret values a run was given, so that no text it stores echoes them back.

A parameter redacted by name (``password="..."``) may reappear in what the
user's code does with it: an exception message, a note, the return value. ptb
knows that value, so ``secret_values`` gathers the values of a run's secret
parameters (at any depth, after a secret flag in an argv-style list, the
password of a URL) and ``ptb.capture.redact.scrub_text`` replaces them in
every text, and ``scrub_env`` from a code environment (an uncommitted diff
that holds one). Only values of at least ``MIN_SECRET_CHARS`` characters are
gathered: scrubbing ``"0"`` or ``"ab"`` out of every text would redact
ordinary words and numbers, not secrets. Walking is bounded (depth, items),
so a hostile container cannot hang a call.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import re
import types
from collections.abc import Mapping
from typing import Any, Dict, Iterable, Set, Tuple

from .codeenv import CodeEnv
from .redact import MIN_SECRET_CHARS, is_secret_name, scrubbed

__all__ = ["MIN_SECRET_CHARS", "is_secret_flag", "secret_values", "scrub_env", "ScrubbedEnv"]

_MAX_VALUES = 64            # more secret values than this in one run: keep the first ones
_MAX_ITEMS = 1000           # items looked at per container
_MAX_DEPTH = 8
_MAX_TEXT = 64 * 1024       # characters of a string searched for URL passwords
_URL_PASSWORD = re.compile(r"://[^/?#\s:@]{0,256}:(?P<password>[^/?#\s@]{1,1024})@")


@functools.lru_cache(maxsize=4096)
def _secret_name(name: str, extra: Tuple[str, ...]) -> bool:
    return is_secret_name(name, extra)


def is_secret_flag(item: Any, extra: Iterable[str] = ()) -> bool:
    """Whether an argv item is a flag whose next item is a secret (``--password``, ``--api-token``)."""
    return (isinstance(item, str) and item.startswith("-") and "=" not in item and len(item) <= 64
            and bool(item.strip("-")) and _secret_name(item.strip("-"), tuple(extra)))


def secret_values(params: Any, extra: Iterable[str] = ()) -> Tuple[str, ...]:
    """The texts of the secret values among ``params`` (name -> value), longest first; never raises.

    Secret values are those under secret-looking names (``is_secret_name``,
    plus ``extra``) at any depth, the item after a secret flag in a list of
    strings, the value of a ``(name, value)`` pair with a secret name, and the
    password of a URL anywhere. Numbers count by their text. Values shorter
    than ``MIN_SECRET_CHARS`` are left out: they are too common to scrub.
    """
    extra = tuple(extra)
    found: Set[str] = set()
    budget = [10_000]       # values visited in all

    def add(value: Any) -> None:
        if isinstance(value, str):
            text = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            text = str(value)
        elif isinstance(value, (bytes, bytearray)):
            text = bytes(value[:_MAX_TEXT]).decode("utf-8", "replace")
        else:
            return
        if len(text.strip()) >= MIN_SECRET_CHARS and len(found) < _MAX_VALUES:
            found.add(text)

    def walk(value: Any, secret: bool, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_DEPTH:
            return
        if isinstance(value, (str, bytes, bytearray, int, float)):
            if secret:
                add(value)
            elif isinstance(value, str) and "://" in value:
                found.update(m.group("password") for m in _URL_PASSWORD.finditer(value[:_MAX_TEXT])
                             if len(m.group("password")) >= MIN_SECRET_CHARS)
            return
        if isinstance(value, Mapping):
            pairs: Iterable[Any] = value.items()
        elif isinstance(value, types.SimpleNamespace):
            pairs = vars(value).items()
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            pairs = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = list(itertools.islice(iter(value), _MAX_ITEMS))
            for i, item in enumerate(items):
                pair = (type(item) in (tuple, list) and len(item) == 2 and isinstance(item[0], str)
                        and _secret_name(item[0], extra))
                if pair:
                    walk(item[1], True, depth + 1)
                else:
                    walk(item, secret or (i > 0 and is_secret_flag(items[i - 1], extra)), depth + 1)
            return
        else:
            return
        for key, item in itertools.islice(pairs, _MAX_ITEMS):
            walk(item, secret or _secret_name(str(key), extra), depth + 1)

    try:
        for name, value in itertools.islice(dict(params or {}).items(), _MAX_ITEMS):
            try:
                walk(value, _secret_name(str(name), extra), 0)
            except Exception:       # a hostile value: what was found so far still counts
                continue
    except Exception:
        pass
    return tuple(sorted(found, key=lambda v: (-len(v), v)))


class ScrubbedEnv(CodeEnv):
    """A code environment with a run's secret values scrubbed from its texts (a diff that holds one).

    Its contents differ from the original's, so it has its own content address.
    """

    def __init__(self, env: CodeEnv, values: Tuple[str, ...]):
        self.kind, self.name = env.kind, env.name
        self._contents = _scrub_strings(env.contents(), values)
        self._filename = super().filename

    def contents(self) -> Dict[str, Any]:
        return self._contents

    @property
    def filename(self) -> str:
        return self._filename


def scrub_env(env: CodeEnv, values: Tuple[str, ...]) -> CodeEnv:
    """``env``, or a ``ScrubbedEnv`` when one of the secret ``values`` occurs in it; never raises."""
    if not values:
        return env
    try:
        text = json.dumps(env.contents(), ensure_ascii=False)
        if not any(v in text for v in values):
            return env
        return ScrubbedEnv(env, values)
    except Exception:
        return env


def _scrub_strings(value: Any, values: Tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return scrubbed(value, (), values) if any(v in value for v in values) else value
    if isinstance(value, dict):
        return {k: _scrub_strings(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_strings(v, values) for v in value]
    return value
