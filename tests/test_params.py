"""ptb.capture.params: JSON-safety, redaction, URL credential stripping and call binding."""
from __future__ import annotations

import argparse
import collections
import configparser
import dataclasses
import datetime
import decimal
import enum
import fractions
import json
import math
import pathlib
import string
import types
import urllib.parse
import uuid
import warnings

import numpy as np
import pytest
import wrapt
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ptb.capture import params
from ptb.capture.params import (
    CYCLE,
    REDACTED,
    TOO_DEEP,
    ParameterWarning,
    bind_call,
    is_secret_name,
    parameters_from,
    prepare_parameters,
    scrub_text,
    strip_url_credentials,
    to_jsonable,
)
from ptb.errors import InvalidInputError


def dumps(value):
    """As the records module hashes: strict JSON, UTF-8."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8")


# ---------------------------------------------------------------- properties
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text()
           | st.binary(max_size=20) | st.datetimes() | st.decimals() | st.fractions()
           | st.uuids() | st.complex_numbers() | st.builds(pathlib.PurePosixPath, st.text()))
hashables = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
values = st.recursive(
    scalars,
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                   | st.frozensets(hashables, max_size=4) | st.sets(hashables, max_size=4)
                   | st.dictionaries(hashables, inner, max_size=4)
                   | st.builds(lambda kw: types.SimpleNamespace(**kw),
                               st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), inner,
                                               max_size=3))),
    max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_to_jsonable_never_raises_and_always_encodes(value):
    out = to_jsonable(value)
    dumps(out)
    assert to_jsonable(out) == out   # already JSON-safe values pass through unchanged


@settings(max_examples=100, deadline=None)
@given(values, st.integers(min_value=2, max_value=200))
def test_output_respects_max_bytes(value, max_bytes):
    out = to_jsonable(value, max_bytes=max_bytes)
    compact = json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert len(compact.encode()) <= max_bytes or (
        isinstance(out, dict) and set(out) == {"type", "summary", "sha256"})


SECRET_KEYS = ["password", "api_key", "apiKey", "GITHUB_TOKEN", "client_secret", "Authorization",
               "aws-secret-access-key", "privateKey", "credentials", "session_cookie", "dbPassword"]
secret_values = st.from_regex(r"QQ[0-9]{6}", fullmatch=True)
plain_leaf = st.none() | st.integers() | st.text(alphabet="abcxyz:/@?=&", max_size=8)
plain_key = st.sampled_from(["a", "b", "keys", "monkey", "keyframe", "author", "n"])


def secret_trees():
    return st.recursive(
        plain_leaf,
        lambda inner: (st.lists(inner, max_size=3)
                       | st.dictionaries(plain_key, inner, max_size=3)
                       | st.dictionaries(st.sampled_from(SECRET_KEYS),
                                         secret_values | st.lists(secret_values, max_size=2)
                                         | st.dictionaries(plain_key, secret_values, max_size=2),
                                         min_size=1, max_size=2)
                       | st.builds(lambda d: dict(d, nested=d), st.dictionaries(
                           st.sampled_from(SECRET_KEYS), secret_values, min_size=1, max_size=2))),
        max_leaves=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(plain_key | st.sampled_from(SECRET_KEYS), secret_trees(), max_size=4),
       st.integers(min_value=64, max_value=4096))
def test_prepare_parameters_never_leaks_secret_values(params, max_bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParameterWarning)
        out = prepare_parameters(params, max_bytes=max_bytes)
    assert "QQ" not in dumps(out).decode()


# ---------------------------------------------------------------- secret names
@pytest.mark.parametrize("name", [
    "password", "passwd", "pwd", "token", "secret", "key", "api_key", "apikey", "apiKey", "APIKey",
    "private_key", "access_key", "AWS_SECRET_ACCESS_KEY", "credential", "credentials", "auth",
    "authorization", "cookie", "session", "signature", "GITHUB_TOKEN", "dbPassword",
    "X-Amz-Signature", "sessionToken", "client-secret", "authtoken", "pw", "db_pw", "DB_PASS",
    "smtp_pass", "passphrase", "sas", "sas_token", "bearer", "jwt", "AccountKey"])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [
    "keys", "num_keys", "monkey", "keyframe", "author", "tokenizer", "mip", "cloudpath",
    "passes", "description", "bbox", "secretary", "pin_memory", "pin", "private", "is_private",
    "bypass", "compass", "dsn", "sassy", "pwm", "passenger"])
def test_not_secret_names(name):
    assert not is_secret_name(name)


def test_extra_secret_names():
    assert is_secret_name("lab_id", ["LAB_ID"]) and is_secret_name("my_pin", ["pin"])
    assert not is_secret_name("lab_id")


# ---------------------------------------------------------------- URLs
@pytest.mark.parametrize("text, expected", [
    ("https://user:ghp_abc123@github.com/org/x.git", "https://github.com/org/x.git"),
    ("https://ghp_abc123@github.com/org/x.git", "https://github.com/org/x.git"),
    ("https://x-access-token:tok@github.com/o/r", "https://github.com/o/r"),
    ("s3://AKIA:SECRET@bucket/path", "s3://bucket/path"),
    ("gs://tok@bucket/path", "gs://bucket/path"),
    ("ssh://git:pw@host/org/r.git", "ssh://host/org/r.git"),
    ("precomputed://https://u:p@host/vol", "precomputed://https://host/vol"),
    ("clone https://u:p@ss@host/x then gs://b/y", "clone https://host/x then gs://b/y"),
    ("https://github.com/org/x.git", "https://github.com/org/x.git"),
    ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
    ("ssh://git@github.com/org/repo.git", "ssh://git@github.com/org/repo.git"),
    ("mail me at bob@example.org", "mail me at bob@example.org"),
    ("file:///tmp/a@b/c", "file:///tmp/a@b/c"),
    ("x" * 50 + "://u:p@h/x", "x" * 50 + "://h/x"),
])
def test_strip_url_userinfo(text, expected):
    assert strip_url_credentials(text) == expected


def test_strip_presigned_query():
    s3 = ("https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F1"
          "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-Security-Token=FQo"
          "&X-Amz-Signature=deadbeef")
    out = strip_url_credentials(s3)
    assert "deadbeef" not in out and "FQo" not in out and "AKIA" not in out
    assert "X-Amz-Expires=3600" in out and f"X-Amz-Signature={REDACTED}" in out
    sas = "see https://a.blob.core.windows.net/c/b?sv=2020-08-04&sig=XYZ%3D&se=2030 ok"
    assert strip_url_credentials(sas) == (
        f"see https://a.blob.core.windows.net/c/b?sv=2020-08-04&sig={REDACTED}&se=2030 ok")
    assert strip_url_credentials("https://h/x?token=abc&page=2") == f"https://h/x?token={REDACTED}&page=2"
    assert strip_url_credentials(strip_url_credentials(s3)) == out


def test_strings_inside_values_are_stripped():
    out = to_jsonable({"remote": "https://u:tok@github.com/x", "paths": ("s3://k:s@b/p",)})
    assert out == {"remote": "https://github.com/x", "paths": ["s3://b/p"]}
    assert to_jsonable(urllib.parse.urlparse("https://u:tok@h/x?a=1")) == "https://h/x?a=1"


# ---------------------------------------------------------------- free text
S = "S3CR3Tvalue42"


@pytest.mark.parametrize("text, expected", [
    (f"pw={S}", f"pw={REDACTED}"),
    (f"password = {S} # the db", f"password = {REDACTED}"),
    (f"[db]\npassword = {S}\nhost = h\n", f"[db]\npassword = {REDACTED}\nhost = h\n"),
    (f"-password = {S}\n+password = {S}\n", f"-password = {REDACTED}\n+password = {REDACTED}\n"),
    (f"db_password: {S}\nuser: bob", f"db_password: {REDACTED}\nuser: bob"),
    (f'token = "{S}"  # do not commit', f'token = "{REDACTED}"  # do not commit'),
    (f"api_key='{S}'", f"api_key='{REDACTED}'"),
    (f'{{"password": "{S}", "user": "bob"}}', f'{{"password": "{REDACTED}", "user": "bob"}}'),
    (f'{{"apiKey":"a\\"{S}"}}', f'{{"apiKey":"{REDACTED}"}}'),
    (f'{{\\"token\\": \\"{S}\\", \\"n\\": 1}}', f'{{\\"token\\": \\"{REDACTED}\\", \\"n\\": 1}}'),
    (f"DBConn(user='bob', password='{S}')", f"DBConn(user='bob', password='{REDACTED}')"),
    (f"[('user', 'bob'), ('password', '{S}')]", f"[('user', 'bob'), ('password', '{REDACTED}')]"),
    (f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={S}==;EndpointSuffix=core.windows.net",
     f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={REDACTED};EndpointSuffix=core.windows.net"),
    (f"Server=db;User Id=sa;Password={S};", f"Server=db;User Id=sa;Password={REDACTED};"),
    (f"run --password={S} --n 3", f"run --password={REDACTED} --n 3"),
    (f"export GITHUB_TOKEN={S}", f"export GITHUB_TOKEN={REDACTED}"),
    (f'os.environ["API_TOKEN"] = "{S}"', f'os.environ["API_TOKEN"] = "{REDACTED}"'),
    (f'os.getenv("API_TOKEN", "{S}")', f'os.getenv("API_TOKEN", "{REDACTED}")'),
    (f'password: str = "{S}"', f'password: str = "{REDACTED}"'),
    (f'if password == "{S}":', f'if password == "{REDACTED}":'),
    (f"'secret' => '{S}'", f"'secret' => '{REDACTED}'"),
    (f"Authorization: Bearer {S}", f"Authorization: Bearer {REDACTED}"),
    (f'headers={{"Authorization": "Basic {S}"}}', f'headers={{"Authorization": "Basic {REDACTED}"}}'),
    (f"Authorization: token {S}", f"Authorization: token {REDACTED}"),
    (f"401 with bearer {S} at /x", f"401 with bearer {REDACTED} at /x"),
    (f"GET https://bob:{S}@h/x?page=2&apikey={S} failed", f"GET https://h/x?page=2&apikey={REDACTED} failed"),
    ("push ghp_" + "A1b2" * 9 + " done", f"push ghp_{REDACTED} done"),
    ("github_pat_11AB" + "x" * 70, f"github_pat_{REDACTED}"),
    ("glpat-" + "x1" * 10, f"glpat-{REDACTED}"),
    ("xoxb-1234-5678-abcdefABCDEF", f"xoxb-{REDACTED}"),
    ("id AKIAIOSFODNN7EXAMPLE end", f"id {REDACTED} end"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U x",
     f"jwt {REDACTED} x"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc+/=\n-----END RSA PRIVATE KEY-----\nok",
     f"-----BEGIN RSA PRIVATE KEY-----{REDACTED}-----END RSA PRIVATE KEY-----\nok"),
    ("+-----BEGIN OPENSSH PRIVATE KEY-----\n+b3BlbnNzaC1rZXk\n", f"+-----BEGIN OPENSSH PRIVATE KEY-----{REDACTED}"),
    ('ssh_key = """-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----"""\nn = 1',
     f"ssh_key = {REDACTED}\nn = 1"),
    ('{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n-----END PRIVATE KEY-----\\n", "n": 1}',
     f'{{"private_key": "{REDACTED}", "n": 1}}'),
])
def test_scrub_text(text, expected):
    assert scrub_text(text) == expected
    assert scrub_text(expected) == expected      # scrubbing twice changes nothing


ORDINARY = """\
import os
keys = d.keys()
monkey = 1
for token in tokens:
    n_keys = len(keys)
sorted(items, key=lambda kv: kv[0])
author: str = "Jane"
def tokenize(text, keyframe=3, cloudpath="gs://b/l", mip=0):
    return [t for t in text.split() if t not in passes]
https://github.com/lab/pipe.git git@github.com:lab/pipe.git ssh://git@host/r.git
mail bob@example.org; pin_memory=True; private=False; bypass = 1
password = None
token = ''
x == y and a != b, sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
Basic information about the bearer of a key.
"""


def test_scrub_text_leaves_ordinary_text_alone():
    assert scrub_text(ORDINARY) == ORDINARY
    for ok in ("password=None", 'token = ""', "key=abc123", "task-" + "x" * 30, "xghp_" + "a" * 36):
        assert scrub_text(ok) == ok


def test_scrub_text_extra_names_and_never_raises():
    assert scrub_text("lab_id=QQ123 n=2", ["LAB_ID"]) == f"lab_id={REDACTED} n=2"
    assert scrub_text("my_pin: 1234", "pin") == f"my_pin: {REDACTED}"     # a str is one name
    assert scrub_text("lab_id=QQ123", (e for e in ["lab"])) == f"lab_id={REDACTED}"
    assert scrub_text("key=QQ123", ["key"]) == f"key={REDACTED}"
    assert scrub_text(12345) == "12345" and scrub_text(None) == "None"
    assert scrub_text(b"password=x") == f"b'password={REDACTED}"

    class Unprintable:
        def __str__(self):
            raise RuntimeError("no")

    assert scrub_text(Unprintable()) == REDACTED
    assert scrub_text("password=x", [Unprintable()]) == REDACTED
    assert scrub_text("") == "" and scrub_text("\ud800 password=x") == f"\ud800 password={REDACTED}"


NAMES = ["password", "pw", "db_pass", "PASSWD", "api_key", "apiKey", "GITHUB_TOKEN", "client_secret",
         "Authorization", "aws-secret-access-key", "AccountKey", "X-Api-Key", "sas_token", "dbPassword",
         "session_cookie", "jwt", "privateKey", "passphrase", "refresh_token"]
PRINTABLE = "".join(c for c in string.printable if not c.isspace())


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(NAMES), st.text(alphabet=PRINTABLE, min_size=8, max_size=60)
       | st.text(alphabet="\"'\\;&=:<>(),redact", min_size=8, max_size=14))
def test_scrub_text_never_keeps_a_secret_value(name, value):
    assume(REDACTED not in value)
    forms = (lambda v: f"{name}={v}", lambda v: json.dumps({name: v}), lambda v: json.dumps({"a": 1, name: v}),
             lambda v: f"{name} = {v}", lambda v: f"{name}: {v}", lambda v: f"A=1;{name}={v};B=2",
             lambda v: f'{{"{name}":{json.dumps(v)}}}')
    for form in forms:
        text, escaped = form(value), json.dumps(value)[1:-1]
        if value in form("\0") or escaped in form("\0"):
            continue        # the value is part of the name or separators ("AccountK"): nothing to find
        out = scrub_text(text).replace(REDACTED, "\0")   # the marker's own letters are no leak
        assert value not in out and escaped not in out, (text, out)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    "password", "pw", "token", "key", "Authorization", "=", "==", "=>", ":", " ", "\n", '"', "'", "\\\"",
    ";", "&", ",", "[", "]", "(", "-", ".", "abc", "None", "Bearer ", "://", "@", "?", "ghp_", "a" * 20,
    "AKIA", "B" * 16, "-----BEGIN RSA PRIVATE KEY-----", "-----END"]), max_size=25).map("".join))
def test_scrub_text_is_idempotent(text):
    once = scrub_text(text)
    assert scrub_text(once) == once


def test_scrub_text_on_a_large_diff_and_adversarial_inputs():
    """Correct here; how fast (linear, a 256 KiB diff in milliseconds) is measured in benchmarks/run.py."""
    lines = []
    i = 0
    while sum(map(len, lines)) < 256 * 1024:
        lines += [f"@@ -{i},7 +{i},7 @@ def step_{i}(src, dst, *, mip=0, keys=None):\n",
                  f"-    vol = CloudVolume(f'gs://bucket/layer{i}', mip=mip, progress=False)\n",
                  f"+    vol = CloudVolume(f'precomputed://https://h/layer{i}', mip=mip)  # key: value\n",
                  "     for key, token in zip(keys, tokens):  data[key] = token.strip()\n",
                  f"+password = S3CR3T{i}\n" if i % 50 == 0 else f"+retries = {i}\n",
                  '     log.info("done %s", {"n": 3, "path": "/tmp/x"})\n']
        i += 1
    diff = "".join(lines)
    out = scrub_text(diff)
    assert "S3CR3T" not in out and out.count(REDACTED) == diff.count("S3CR3T")
    assert scrub_text("x" * 200000 + "password=abc").endswith(f"password={REDACTED}")


def test_prepare_parameters_review_leaks():
    """Each leak a review proved: a secret under these shapes once reached the volume."""
    Creds = collections.namedtuple("Creds", "user password")

    class DBConn:               # a repr showing its fields, as attrs and pydantic objects do
        def __init__(self, user, password):
            self.user, self.password = user, password

        def __repr__(self):
            return f"DBConn(user={self.user!r}, password={self.password!r})"

    params = {
        "pw": "QQpw",
        "db": Creds("bob", "QQnamedtuple"),
        "conn": DBConn("bob", "QQrepr"),
        "azure": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=QQazure;EndpointSuffix=x.net",
        "headers": ["Content-Type: json", "Authorization: Bearer QQheader"],
        "cfg": [("user", "bob"), ("password", "QQpairs")],
        "mixed": [("password", "QQmixed"), "x"],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParameterWarning)
        out = prepare_parameters(params)
    assert "QQ" not in json.dumps(out)
    assert out["pw"] == REDACTED
    assert out["db"] == {"user": "bob", "password": REDACTED}
    assert out["conn"]["repr"] == f"DBConn(user='bob', password='{REDACTED}')"
    assert out["azure"] == f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={REDACTED};EndpointSuffix=x.net"
    assert out["headers"] == ["Content-Type: json", f"Authorization: Bearer {REDACTED}"]
    assert out["cfg"] == [["user", "bob"], ["password", REDACTED]]
    assert out["mixed"] == [["password", REDACTED], "x"]
    assert prepare_parameters({"fields": ["password", "user"]}) == {"fields": ["password", "user"]}
    assert prepare_parameters({"lab": [("lab_id", "QQ")]}, redact=["lab_id"]) == {"lab": [["lab_id", REDACTED]]}
    assert prepare_parameters({"s": "lab_id=QQ1"}, redact=["lab_id"]) == {"s": f"lab_id={REDACTED}"}
    assert to_jsonable(Creds("bob", "x")) == {"user": "bob", "password": "x"}   # names kept, no redaction
    assert to_jsonable("password=QQ") == f"password={REDACTED}"                 # strings always scrubbed


# ---------------------------------------------------------------- types
class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Config:
    size: int = 3
    path: pathlib.Path = pathlib.Path("/data")
    token: str = "QQ-secret"


def test_scalars_and_stdlib_types():
    assert to_jsonable(None) is None and to_jsonable(True) is True and to_jsonable(7) == 7
    assert [to_jsonable(x) for x in (math.nan, math.inf, -math.inf, 1.5)] == ["nan", "inf", "-inf", 1.5]
    assert to_jsonable(pathlib.Path("/a/b")) == "/a/b"
    assert to_jsonable(pathlib.PureWindowsPath("C:/x")) == "C:\\x"
    assert to_jsonable({3, 1, 2}) == [1, 2, 3] and to_jsonable(frozenset({"b", "a"})) == ["a", "b"]
    assert to_jsonable({1, "a", None}) == to_jsonable({None, "a", 1})   # unorderable: by repr
    assert to_jsonable((1, (2, 3))) == [1, [2, 3]]
    assert to_jsonable({1: "a", (2, 3): "b"}) == {"1": "a", "(2, 3)": "b"}
    assert to_jsonable(datetime.datetime(2024, 5, 6, 7, 8, 9)) == "2024-05-06T07:08:09"
    aware = datetime.datetime(2024, 5, 6, 7, 8, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert to_jsonable(aware) == "2024-05-06T07:08:00+02:00"
    assert to_jsonable(datetime.date(2024, 5, 6)) == "2024-05-06"
    assert to_jsonable(datetime.time(7, 8)) == "07:08:00"
    assert to_jsonable(datetime.timedelta(minutes=2)) == 120.0
    assert to_jsonable(decimal.Decimal("1.10")) == "1.10"
    assert to_jsonable(fractions.Fraction(1, 3)) == "1/3"
    u = uuid.uuid4()
    assert to_jsonable(u) == str(u)
    assert to_jsonable(Color.RED) == "RED"
    assert to_jsonable(Level.HIGH) == 3 and type(to_jsonable(Level.HIGH)) is int    # what a JSON queue sends
    assert to_jsonable(b"abc") == {"type": "bytes", "length": 3, "sha256":
                                   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}


def test_containers_of_attributes():
    assert to_jsonable(Config()) == {"size": 3, "path": "/data", "token": "QQ-secret"}
    assert to_jsonable(types.SimpleNamespace(a=(1,), b={2})) == {"a": [1], "b": [2]}
    assert to_jsonable(argparse.Namespace(x=1, out=pathlib.Path("o"))) == {"x": 1, "out": "o"}


def config_parser():
    cp = configparser.ConfigParser()
    cp.read_string("[DEFAULT]\nroot = /data\n[run]\nsize = 8\nout = %(root)s/out\n"
                   "broken = %(nope)s\n[db]\npassword = QQ1\n")
    return cp


def test_configparser_real_values():
    out = to_jsonable(config_parser())
    assert out["DEFAULT"] == {"root": "/data"}
    assert out["run"] == {"size": "8", "out": "/data/out", "broken": "%(nope)s", "root": "/data"}
    assert to_jsonable(config_parser()["run"])["out"] == "/data/out"
    empty = configparser.ConfigParser()
    empty.read_string("[a]\nx = 1\n")
    assert to_jsonable(empty) == {"a": {"x": "1"}}


def test_numpy_values():
    assert to_jsonable(np.float32(1.5)) == 1.5 and type(to_jsonable(np.int64(3))) is int
    assert to_jsonable(np.bool_(True)) is True and to_jsonable(np.float64("nan")) == "nan"
    assert to_jsonable(np.str_("s3://k:s@b/x")) == "s3://b/x"
    assert to_jsonable(np.arange(6, dtype=np.uint16).reshape(2, 3)) == [[0, 1, 2], [3, 4, 5]]    # small: values
    assert to_jsonable(np.array(7, np.int8)) == 7 and to_jsonable(np.array([0.5, np.nan])) == [0.5, "nan"]
    assert to_jsonable(np.array([True, False])) == [True, False] and to_jsonable(np.array(["a"])) == ["a"]
    limit = params.LIST_ARRAY_ITEMS
    assert to_jsonable(np.ones(limit, np.uint8)) == [1] * limit
    small = to_jsonable(np.arange(limit + 1, dtype=np.uint16))   # past the bound: a summary with a hash
    assert small["type"] == "ndarray" and small["shape"] == [limit + 1] and small["dtype"] == "uint16"
    assert small["sha256"] == to_jsonable(np.arange(limit + 1, dtype=np.uint16))["sha256"]
    assert small["sha256"] != to_jsonable(np.ones(limit + 1, np.uint16))["sha256"]
    assert to_jsonable(np.array([1 + 2j]))["type"] == "ndarray"       # complex: not a JSON number
    large = to_jsonable(np.zeros((512, 512, 8), np.uint8))   # 2 MiB: summarised without a hash
    assert large == {"type": "ndarray", "shape": [512, 512, 8], "dtype": "uint8"}
    assert "sha256" not in to_jsonable(np.array([object()]))
    dumps(to_jsonable({"a": np.zeros(3), "b": [np.int8(1), np.datetime64("2020-01-02")]}))


def test_cloudvolume(tmp_path):
    from cloudvolume import CloudVolume
    cv = CloudVolume.from_numpy(np.zeros((8, 8, 8), np.uint8), vol_path="file://" + str(tmp_path / "v"),
                                resolution=(1, 1, 1))
    assert to_jsonable(cv) == {"cloudpath": "file://" + str(tmp_path / "v"), "mip": 0}
    assert to_jsonable(cv[0:2, 0:2, 0:1]) == [[[[0]], [[0]]], [[[0]], [[0]]]]   # a cutout is an ndarray


def test_unknown_objects_and_failing_repr():
    class Thing:
        def __repr__(self):
            return "Thing(url=https://u:tok@h/x) at 0x7f00aa"

    class Broken:
        def __repr__(self):
            raise RuntimeError("no")

        def __getattr__(self, name):
            raise KeyError(name)

    thing, broken = to_jsonable(Thing()), to_jsonable(Broken())
    assert thing["type"].endswith("<locals>.Thing") and thing["repr"] == "Thing(url=https://h/x)"
    assert broken["type"].endswith("<locals>.Broken") and broken["repr"] == "<unrepresentable>"
    assert to_jsonable(object()) == {"type": "builtins.object", "repr": "<object object>"}
    assert to_jsonable(x for x in ())["type"] == "builtins.generator"   # not consumed


def test_cycles_depth_and_size():
    loop: list = [1]
    loop.append(loop)
    assert to_jsonable(loop) == [1, CYCLE]
    d: dict = {}
    d["self"] = d
    assert to_jsonable(d) == {"self": CYCLE}
    shared = [1]
    assert to_jsonable([shared, shared]) == [[1], [1]]   # shared is not a cycle
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert TOO_DEEP in json.dumps(to_jsonable(deep))
    big = to_jsonable("x" * 100_000)
    assert big["summary"] == "too large: 100000 bytes" and len(big["sha256"]) == 64
    assert to_jsonable(list(range(100_000)))["summary"].startswith("too large")
    assert to_jsonable(list(range(200)), max_bytes=100)["summary"].startswith("too large")
    assert to_jsonable(10 ** 5000)["type"] == "builtins.int"
    assert to_jsonable("\ud800x") == "\\ud800x"   # lone surrogate: still encodable


# ---------------------------------------------------------------- parameters_from / prepare
def test_parameters_from_every_container():
    assert parameters_from(None) == {}
    assert parameters_from({"a": 1, 2: "b"}) == {"a": 1, "2": "b"}
    assert parameters_from(types.MappingProxyType({"a": 1})) == {"a": 1}
    assert parameters_from(types.SimpleNamespace(a=1)) == {"a": 1}
    assert parameters_from(argparse.Namespace(a=1)) == {"a": 1}
    assert parameters_from(Config())["size"] == 3
    assert parameters_from(config_parser())["run"]["out"] == "/data/out"
    for bad in ([1, 2], "a=1", 3, Config):
        with pytest.raises(InvalidInputError, match="not supported.*dict"):
            parameters_from(bad)


def test_prepare_parameters_redacts_at_every_depth():
    params = {"size": 3, "token": "QQ1", "opts": {"db": {"password": "QQ2", "host": "h"}},
              "items": [{"apiKey": "QQ3"}], "remote": "https://u:QQ4@github.com/x",
              "cfg": config_parser(), "obj": Config(), "lab": "QQ5", "big": "x" * 10}
    out = prepare_parameters(params, redact=["lab"], exclude=["big"])
    text = json.dumps(out)
    assert "QQ" not in text and "big" not in out
    assert out["token"] == REDACTED and out["opts"]["db"] == {"password": REDACTED, "host": "h"}
    assert out["cfg"]["db"]["password"] == REDACTED and out["cfg"]["run"]["size"] == "8"
    assert out["obj"]["token"] == REDACTED and out["remote"] == "https://github.com/x"
    assert prepare_parameters(argparse.Namespace(secret=1, n=2)) == {"secret": REDACTED, "n": 2}


def test_prepare_parameters_warns_never_raises():
    with pytest.warns(ParameterWarning, match="'obj'"):
        out = prepare_parameters({"obj": object(), "arr": np.zeros((1024, 1024))})
    assert out["obj"]["type"] == "builtins.object"
    with pytest.warns(ParameterWarning, match="too large"):
        out = prepare_parameters({"s": "y" * 100}, max_bytes=50)
    assert out["s"]["summary"].startswith("too large")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prepare_parameters({"obj": object()})["obj"]["repr"] == "<object object>"


# ---------------------------------------------------------------- bind_call
calls = []


@wrapt.decorator
def record(wrapped, instance, args, kwargs):
    calls.append(bind_call(wrapped, instance, args, kwargs))
    return wrapped(*args, **kwargs)


@record
def function(a, b=2, *rest, c=3, **extra):
    return a


class K:
    @record
    def m(self, x, y=5):
        return x

    @record
    @classmethod
    def c(cls, x, y=6):
        return x

    @classmethod
    @record
    def c2(cls, x):
        return x

    @record
    @staticmethod
    def s(x, y=7):
        return x

    @record
    def this(this, x):
        return x


def bound(call):
    calls.clear()
    call()
    return calls[-1]


def test_bind_function_defaults_varargs():
    assert bound(lambda: function(1)) == {"a": 1, "b": 2, "rest": [], "c": 3, "extra": {}}
    assert bound(lambda: function(1, 9, 8, 7, c=0, z=1)) == {
        "a": 1, "b": 9, "rest": [8, 7], "c": 0, "extra": {"z": 1}}
    assert bound(lambda: function(a=4)) == {"a": 4, "b": 2, "rest": [], "c": 3, "extra": {}}


def test_bind_methods_every_form():
    k = K()
    assert bound(lambda: k.m(1)) == {"x": 1, "y": 5}
    assert bound(lambda: K.m(k, 7)) == {"x": 7, "y": 5}
    assert bound(lambda: K.m(k, x=7, y=0)) == {"x": 7, "y": 0}
    assert bound(lambda: k.c(1)) == {"x": 1, "y": 6}
    assert bound(lambda: K.c(1, y=2)) == {"x": 1, "y": 2}
    assert bound(lambda: K.c2(1)) == {"x": 1} and bound(lambda: k.c2(2)) == {"x": 2}
    assert bound(lambda: k.s(1)) == {"x": 1, "y": 7}
    assert bound(lambda: K.s(1, 2)) == {"x": 1, "y": 2}
    assert bound(lambda: k.this(3)) == {"x": 3}


def test_bind_with_instance_none_self_in_args():
    k = K()
    plain = K.__dict__["m"].__wrapped__
    assert bind_call(plain, None, (k, 7), {}) == {"x": 7, "y": 5}
    assert bind_call(plain, k, (7,), {}) == {"x": 7, "y": 5}
    assert bind_call(K.m, k, (7,), {"y": 1}) == {"x": 7, "y": 1}   # the wrapper itself


def test_bind_bad_call_gives_none():
    calls.clear()
    with pytest.raises(TypeError):
        function()
    with pytest.raises(TypeError):
        K().m(1, 2, 3)
    assert calls == [None, None]
    assert bind_call(len, None, ([],), {}) in ({}, {"obj": []})
