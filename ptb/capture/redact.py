"""Secret detection: which names hold secrets, and secrets scrubbed out of free text.

``is_secret_name`` decides by name parts; ``strip_url_credentials`` removes
credentials from URLs; ``scrub_text`` removes every secret it can recognise
from any text (parameters, reprs, diffs, sources, exception messages) while
keeping the names, so a record stays readable. All are re-exported by
``ptb.capture.params``. Every regex here is bounded or possessive, so scrubbing is
linear in the text's length.
"""
from __future__ import annotations

import functools
import re
from typing import Iterable, List, Optional, Tuple

__all__ = ["REDACTED", "SECRET_WORDS", "MIN_SECRET_CHARS", "is_secret_name", "strip_url_credentials",
           "scrub_text", "scrubbed"]

REDACTED = "<redacted>"
#: Known secret values shorter than this are not scrubbed from texts: "0" or "abc" are everywhere.
MIN_SECRET_CHARS = 4

#: Name parts (split on ``_``, ``-``, ``.``, spaces and camelCase) that mark a secret.
#: Not "pin" (``pin_memory``), "private" (``private=True``) nor "dsn" (a DSN's secrets are
#: scrubbed from its text anyway).
SECRET_WORDS: tuple[str, ...] = (
    "password", "passwords", "passwd", "pwd", "pw", "pass", "passphrase", "token", "secret",
    "secrets", "key", "apikey", "privatekey", "credential", "credentials", "cred", "creds", "auth",
    "oauth", "authorization", "cookie", "cookies", "session", "signature", "bearer", "jwt", "sas",
)
# a part ending with one of these is secret too ("dbpassword", "authtoken", "clientsecret")
_SECRET_SUFFIXES = ("password", "passwd", "passphrase", "secret", "token", "credential",
                    "credentials")
# "<prefix>key" written as one word is secret ("apikey", "accesskey"); "monkey" is not
_KEY_PREFIXES = ("api", "private", "access", "secret", "session", "auth", "signing",
                 "encryption", "master", "client", "ssh", "gpg", "account", "storage", "sas")
_QUERY_SECRETS = ("sig",)     # Azure SAS signature
_SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git", "sftp")

_SPLIT = re.compile(r"[^A-Za-z0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# userinfo runs to the last "@" before the authority ends, so "p@ss" passwords go entirely
_USERINFO = re.compile(r"://(?P<userinfo>[^/?#\s]*)@")      # starts with a literal: fast
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+.-")
_QUERY = re.compile(r"(?P<sep>[?&])(?P<name>[^=&#?\s]+)=(?P<value>[^&#\s]*)")


def _name_parts(name: str) -> list[str]:
    return [p.lower() for chunk in _SPLIT.split(name) for p in _CAMEL.findall(chunk)]


def is_secret_name(name: str, extra: Iterable[str] = ()) -> bool:
    """Whether a parameter called ``name`` probably holds a secret.

    Matches whole name parts, so ``api_key``/``apiKey``/``GITHUB_TOKEN``/``db_pass``
    are secret but ``keys``, ``monkey``, ``keyframe``, ``author`` and ``bypass`` are not.
    ``extra`` names (whole names or name parts, any case) are secret too.
    """
    try:
        name = str(name)
        parts = _name_parts(name)
        wanted = {str(e).lower() for e in extra}
        if name.lower() in wanted or wanted.intersection(parts):
            return True
        for part in parts:
            if part in SECRET_WORDS or part.endswith(_SECRET_SUFFIXES):
                return True
            stem = part[:-1] if part.endswith("keys") else part
            if stem.endswith("key") and stem[:-3] in _KEY_PREFIXES:
                return True
        return False
    except Exception:   # a name that cannot even be read: err on the safe side
        return True


def _strip_userinfo(match: re.Match) -> str:
    head = match.string[max(0, match.start() - 9):match.start()].lower()
    ssh = any(head.endswith(s) and head[:-len(s)][-1:] not in _SCHEME_CHARS for s in _SSH_SCHEMES)
    if ssh and ":" not in match.group("userinfo"):
        return match.group(0)     # "ssh://git@host": a user name, not a secret
    return "://"


def _redact_query(match: re.Match) -> str:
    name = match.group("name")
    if is_secret_name(name, _QUERY_SECRETS) and match.group("value") != REDACTED:
        return f"{match.group('sep')}{name}={REDACTED}"
    return match.group(0)


def strip_url_credentials(text: str) -> str:
    """Remove credentials from every URL inside ``text``.

    ``https://user:TOKEN@host/x`` becomes ``https://host/x`` (any scheme,
    user-only forms too), and secret-looking query parameters
    (``?token=..``, ``X-Amz-Signature=..``, ``sig=..``) get ``REDACTED``
    values. scp-like ``git@github.com:org/repo.git`` names a user, not a
    secret, and is left alone, as is the user of ``ssh://git@host/..``.
    """
    try:
        if "@" in text and "://" in text:
            text = _USERINFO.sub(_strip_userinfo, text)
        if "=" in text:
            text = _QUERY.sub(_redact_query, text)
        return text
    except Exception:
        return REDACTED if isinstance(text, str) else text


# ------------------------------------------------------------------ free text
# Python's regex engine is slow at trying every position of a large text, so nothing here scans
# position by position: literal prefixes are found with str.find (or a regex that starts with the
# literal), and everything after them is matched at a known position with bounded or possessive
# quantifiers. So scrubbing is linear in the text's length, a few ms for 256 KiB.

# After a name: "=", ": ", " = ", '": ', ": str = ", '"] = ', " == ", "' => ", and "', " between
# a quoted name and a quoted value ("('NAME', 'value')").
_SEP = re.compile(
    r"\\?[\"']?\]?[ \t]{0,8}"
    r"(?::[ \t]{0,8}[A-Za-z_][\w.]{0,40}+(?:\[(?:[\w., |]|\[[\w., |]{0,40}+\]){0,60}+\])?[ \t]+=(?!=)"
    r"|:=|=(?:=|>)?|:(?![:=])|(?<=[\"'])[ \t]{0,8},(?=[ \t]{0,8}\\?[\"']))"
    r"(?P<space>[ \t]*+)")
_NAME_CHARS = re.compile(r"[\w.\-]*+")     # a name's characters, matched forward (and in the reversed text)
_QUOTED = re.compile(r"\\\"(?P<e>(?:[^\"\\\n]|\\[^\"\n]){0,8192}+)"      # JSON inside a JSON string
                     r"|\"(?P<d>(?:[^\"\\\n]|\\.){0,8192}+)|'(?P<s>(?:[^'\\\n]|\\.){0,8192}+)")
_SCHEME = re.compile(r"(?:Bearer|Basic|Digest|Token|token|Negotiate|OAuth)[ \t]+")
_WORD = re.compile(r"\S[^\s;&]{0,8191}+")       # "NAME=value;Next=..": to a blank, ";" or "&"
_LINE = re.compile(r"[^\r\n]{1,8192}+")         # "NAME = value": to the end of the line
_LITERAL = re.compile(r"(?:None|null|nil|True|False|true|false)(?=[\s,;)\]}#]|\Z)")  # "x: str = None, y=1"
_BLANK = ("None", "null", "nil", "True", "False", "true", "false", '""', "''", "[]", "{}", REDACTED)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# Well-known token shapes: (literal that starts them, regex); group "keep" is kept.
_TOKEN = r"(?P<keep>{})[A-Za-z0-9_\-]{{20,400}}+"
_SHAPES = tuple((literal, re.compile(pattern)) for literal, pattern in (
    ("gh", _TOKEN.format("gh[pousr]_")), ("github_pat_", _TOKEN.format("github_pat_")),
    ("glpat-", _TOKEN.format("glpat-")), ("xox", r"(?P<keep>xox[baprs]-)[A-Za-z0-9\-]{10,400}+"),
    ("hf_", _TOKEN.format("hf_")), ("sk_live_", _TOKEN.format("sk_live_")),
    ("rk_live_", _TOKEN.format("rk_live_")), ("sk-", _TOKEN.format("sk-(?:proj-)?")),
    ("AIza", _TOKEN.format("AIza")), ("npm_", _TOKEN.format("npm_")), ("pypi-", _TOKEN.format("pypi-")),
    ("AKIA", r"AKIA[0-9A-Z]{16}(?![0-9A-Za-z])"), ("ASIA", r"ASIA[0-9A-Z]{16}(?![0-9A-Za-z])"),
    ("eyJ", r"eyJ[A-Za-z0-9_\-]{8,4096}+\.[A-Za-z0-9_\-]{8,4096}+\.[A-Za-z0-9_\-]{8,4096}+"),
    ("Bearer", r"(?P<keep>Bearer[ \t]+)[A-Za-z0-9._~+/\-]{8,8192}+=*+"),
    ("bearer", r"(?P<keep>bearer[ \t]+)[A-Za-z0-9._~+/\-]{8,8192}+=*+"),
))
_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@functools.lru_cache(maxsize=16384)
def _secret(name: str, extra: tuple) -> bool:
    # a bare "key" is code far more often than a secret ("key=lambda kv: kv[0]", "key = k.strip()")
    return (name.lower() != "key" or "key" in extra) and is_secret_name(name, extra)


@functools.lru_cache(maxsize=64)
def _stems(words: tuple, extra: tuple) -> tuple:
    """Substrings every secret name holds (lower case): no secret name lacks all of them."""
    found = sorted(set(words) | set(_SECRET_SUFFIXES) | {"key"} | {e for e in extra if e},
                   key=len)
    return tuple(w for i, w in enumerate(found) if not any(s in w for s in found[:i]))


def _value(text: str, pos: int, spaced: bool) -> Optional[Tuple[int, int]]:
    """The span of the value that starts at ``pos``, or None when there is nothing to redact."""
    m = _QUOTED.match(text, pos)
    if m is not None:
        start, end = m.span(m.lastgroup or 0)
        scheme = _SCHEME.match(text, start, end)
        start = scheme.end() if scheme is not None else start
        if text[start:end] == REDACTED:
            return None
        if end > start:
            return start, end
    scheme = _SCHEME.match(text, pos)
    start = scheme.end() if scheme is not None else pos
    m = (_LINE if spaced else _WORD).match(text, start)
    value = m.group().rstrip() if m is not None else ""
    end = start + len(value)
    if not value or (spaced and _LITERAL.match(value)):
        return None
    if value in _BLANK and (spaced or not text[end:end + 1].strip()):
        return None     # "password=None", "password = ''": nothing to hide
    return start, end


def _match_end(m: Optional[re.Match]) -> int:
    assert m is not None       # "[\w.\-]*+" matches everywhere
    return m.end()


def _scrub_assignments(text: str, extra: tuple) -> str:
    """Values after secret names: found from where a secret word occurs, not by trying every position."""
    low = text.lower()
    if len(low) != len(text):
        low = text.translate(_ASCII_LOWER)
    hits = []
    for stem in _stems(SECRET_WORDS, extra):
        i = low.find(stem)
        while i >= 0:
            hits.append(i)
            i = low.find(stem, i + 1)
    if not hits:
        return text
    rev, n = text[::-1], len(text)
    out: List[str] = []
    done, word_end = 0, -1
    for i in sorted(hits):
        if i < word_end or i < done:        # a word already looked at, or a value already redacted
            continue
        start = n - _match_end(_NAME_CHARS.match(rev, n - i, n - done))     # back to where the name starts
        word_end = _match_end(_NAME_CHARS.match(text, i))
        sep = _SEP.match(text, word_end)
        if sep is None:
            continue
        name = text[max(start, word_end - 256):word_end].lstrip(".-")
        if not name or not _secret(name, extra):
            continue
        span = _value(text, sep.end(), bool(sep.group("space")))
        if span is not None:
            out += (text[done:span[0]], REDACTED)
            done = span[1]
    out.append(text[done:])
    return "".join(out)


def _scrub_pem(text: str) -> str:
    """The bodies of PEM private key blocks, up to their END line (or 16 KiB when it is missing)."""
    out: List[str] = []
    done = 0
    while (m := _PEM_BEGIN.search(text, done)) is not None:
        stop = min(len(text), m.end() + 16384)
        end = text.find("-----END", m.end(), stop)
        out += (text[done:m.end()], REDACTED)
        done = end if end >= 0 else stop
    out.append(text[done:])
    return "".join(out)


def _scrub_shape(match: re.Match) -> str:
    start = match.start()
    if start and match.string[start - 1] in _WORD_CHARS:
        return match.group()      # inside a longer word: not this token
    return f"{match.groupdict().get('keep') or ''}{REDACTED}"


def _scrub_values(text: str, values: Iterable[str]) -> str:
    """Every occurrence of the known secret ``values`` (longest first) replaced by ``REDACTED``."""
    for value in sorted({v for v in values if isinstance(v, str) and len(v.strip()) >= MIN_SECRET_CHARS},
                        key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def scrub_text(text: str, extra: Iterable[str] = (), values: Iterable[str] = ()) -> str:
    """``text`` with every secret it holds replaced by ``REDACTED``; never raises.

    Removes URL credentials (``strip_url_credentials``), the values of
    secret-looking names (``is_secret_name``, plus ``extra``) in ``NAME=value``,
    ``NAME: value``, ``NAME = 'value'``, ``"NAME": "value"`` and
    ``A=x;NAME=value;B=y`` forms, ``Bearer`` tokens, and well-known token shapes
    (GitHub, GitLab, Slack, Hugging Face, AWS access key IDs, JWTs, PEM private
    key blocks). Names are kept. A value after ``=`` or ``:`` and a blank runs
    to the end of its line; without the blank, to the next blank, ``;`` or
    ``&``. ``values`` are secret values known to the caller (a run's secret
    parameters, ``ptb.capture.secretvalues``): each is replaced wherever it
    occurs, if it has at least ``MIN_SECRET_CHARS`` characters (shorter ones
    are too common to scrub). Linear in the text's length; anything not a str
    is ``str()``'d first.
    """
    try:
        text = text if isinstance(text, str) else str(text)
        if isinstance(extra, str):
            extra = (extra,)
        wanted = tuple(sorted({str(e).lower() for e in extra}))
        if values:
            text = _scrub_values(text, values)
        text = strip_url_credentials(text)
        if "PRIVATE KEY" in text:        # first: 'key = """-----BEGIN..' would leave only its first line
            text = _scrub_pem(text)
        text = _scrub_assignments(text, wanted)
        for literal, pattern in _SHAPES:
            if literal in text:
                text = pattern.sub(_scrub_shape, text)
        return text
    except Exception:
        return REDACTED


def scrubbed(text: str, redact: Iterable[str] = (), values: Iterable[str] = ()) -> str:
    """The one rule for a text stored in a volume: lone surrogates escaped (``\\udcff``), secrets scrubbed.

    ``redact`` names more secret names, ``values`` are the secret values the
    run knows (``ptb.capture.secretvalues``; those under ``MIN_SECRET_CHARS``
    characters are left alone). Every text ptb stores goes through here
    (parameters, notes, descriptions, errors, sources). Never raises.
    """
    try:
        text = text if isinstance(text, str) else str(text)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:      # lone surrogates would fail every later encode
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    except Exception:
        return REDACTED
    if len(text) <= _CACHED_TEXT and type(text) is str:
        try:
            return _scrubbed_short(text, tuple(redact), tuple(values))
        except TypeError:       # an unhashable name or value: scrubbed uncached
            pass
    return scrub_text(text, redact, values)


_CACHED_TEXT = 512      # characters: a chunk loop's parameters and notes come back on every call


@functools.lru_cache(maxsize=4096)
def _scrubbed_short(text: str, redact: Tuple[str, ...], values: Tuple[str, ...]) -> str:
    return scrub_text(text, redact, values)
