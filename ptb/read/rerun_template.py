#!/usr/bin/env python3
"""Re-run a run recorded by ptb, from the code restored next to this script (``ptb reproduce`` wrote it).

Calls the recorded function (imported from ``source/``) or runs the recorded
cell with the run's recorded parameters, the per-run values included. The
output goes to the volume given with ``--volume``: without it, the script
refuses to run, so the original layer is never overwritten by accident
(``--overwrite-original`` allows it). Values that were redacted (secrets) or
summarised (large arrays, unknown objects) when the run was recorded are never
made up: the script names them and refuses to run until each is given with
``--set NAME=VALUE`` or ``--values FILE.json``. VALUE is JSON (``3``,
``[1, 2]``, ``"text"``), or taken as text when it is not. Needs only the
standard library, and the code's own packages (``requirements.txt``).

This file is a template inside ptb: ``RECORD`` is filled in with the run's data.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import inspect
import json
import os
import sys
from typing import Any, Dict, List, Tuple

RECORD: Dict[str, Any] = {}     # filled in by ptb reproduce
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "source")
FORMATS = ("precomputed://", "graphene://", "n5://", "zarr://", "zarr2://", "zarr3://", "boss://")


class Refused(Exception):
    """Why the call is not made; exit status 2."""


def dotted(path: List[Any]) -> str:
    return ".".join(str(p) for p in path)


def normal(cloudpath: str) -> str:
    """A cloudpath as ptb names volumes: no format prefix, no trailing slash; a local path as file://."""
    text = str(cloudpath).strip()
    for prefix in FORMATS:
        if text.startswith(prefix):
            text = text[len(prefix):]
    if "://" not in text:
        text = "file://" + os.path.abspath(os.path.expanduser(text))
    return text.rstrip("/")


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def locate(params: Dict[str, Any], path: List[Any]) -> Tuple[Any, Any]:
    """The container holding ``path``'s last step, and that step (an index for lists)."""
    holder: Any = params
    for step in path[:-1]:
        holder = holder[step]
    last = path[-1]
    return holder, (int(last) if isinstance(holder, list) else last)


def path_of(params: Dict[str, Any], name: str) -> List[Any]:
    """A dotted name (``config.db.password``, ``items.2``) as a path into the parameters."""
    path: List[Any] = []
    holder: Any = params
    for step in name.split("."):
        key: Any = int(step) if isinstance(holder, list) and step.lstrip("-").isdigit() else step
        path.append(key)
        try:
            holder = holder[key]
        except (KeyError, IndexError, TypeError):
            holder = None
    return path


def supplied_values(args: argparse.Namespace, params: Dict[str, Any]) -> Dict[str, Any]:
    given: Dict[str, Any] = {}
    if args.values:
        with open(args.values, encoding="utf-8") as handle:
            data = json.load(handle)
        if not isinstance(data, dict):
            raise Refused(f"{args.values} must hold a JSON object of NAME: VALUE")
        given.update(data)
    for item in args.set:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise Refused(f"--set {item!r}: write NAME=VALUE")
        given[name] = parse_value(text)
    for name, value in given.items():
        try:
            holder, key = locate(params, path_of(params, name))
            holder[key] = value
        except (KeyError, IndexError, TypeError, ValueError):
            raise Refused(f"--set {name}: the recorded parameters have no {name.rpartition('.')[0] or name} "
                          f"to set it in") from None
    return given


def point_output(args: argparse.Namespace, params: Dict[str, Any]) -> None:
    """Put ``--volume`` where the recorded parameters name the run's volume; refuse to write the original."""
    original = RECORD["volume"]
    where = [dotted(p) for p in RECORD["volume_at"]]
    if args.volume is None:
        if args.overwrite_original:
            return
        if where:
            raise Refused(f"the run wrote to {original} (its parameter {', '.join(where)}): give --volume "
                          f"NEW_CLOUDPATH to write elsewhere, or --overwrite-original to write there again")
        raise Refused(f"the recorded parameters do not name the run's volume {original} (the decorator or the "
                      f"code names it): this script cannot point the output elsewhere, so running it may write "
                      f"there again. Edit source/ to write elsewhere, or pass --overwrite-original")
    if not where:
        raise Refused(f"--volume: the recorded parameters do not name the run's volume {original}, so there is "
                      f"nothing to replace; edit source/ to write elsewhere, or pass --overwrite-original")
    if normal(args.volume) == normal(original) and not args.overwrite_original:
        raise Refused(f"--volume {args.volume} is the run's own volume; pass --overwrite-original to write there")
    for path in RECORD["volume_at"]:
        holder, key = locate(params, path)
        if isinstance(holder[key], dict):
            holder[key]["cloudpath"] = args.volume
        else:
            holder[key] = args.volume


def rebuild_objects(params: Dict[str, Any]) -> None:
    """CloudVolume objects were recorded as their cloudpath and mip: open them again."""
    for path in RECORD["objects"]:
        holder, key = locate(params, path)
        value = holder[key]
        if isinstance(value, dict):
            from cloudvolume import CloudVolume

            holder[key] = CloudVolume(value["cloudpath"], mip=value["mip"])


def load_function() -> Any:
    root = RECORD.get("import_root")
    sys.path.insert(0, os.path.join(SOURCE, root) if root else SOURCE)
    if RECORD["module"] == "__main__":        # a script run as a program: load it without running its main
        if not RECORD.get("file"):
            raise Refused("the function was defined in a script run as __main__, and its file is not known")
        spec = importlib.util.spec_from_file_location("ptb_rerun_main", os.path.join(SOURCE, RECORD["file"]))
        if spec is None or spec.loader is None:
            raise Refused(f"cannot load source/{RECORD['file']}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["ptb_rerun_main"] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(RECORD["module"])
    here = os.path.realpath(getattr(module, "__file__", "") or "")
    if not here.startswith(os.path.realpath(SOURCE) + os.sep):
        print(f"rerun.py: note: {RECORD['module']} was imported from {here or 'a built-in'}, not from source/",
              file=sys.stderr)
    owner, target = None, module
    for part in RECORD["qualname"].split("."):
        owner, target = target, getattr(target, part)
    raw = inspect.getattr_static(owner, RECORD["qualname"].rsplit(".", 1)[-1]) if inspect.isclass(owner) else None
    if raw is not None and not isinstance(getattr(raw, "__wrapped__", raw), (staticmethod, classmethod)) \
            and not isinstance(raw, (staticmethod, classmethod)):
        raise Refused(f"{RECORD['qualname']} is a method: make an instance of its class and call it yourself "
                      f"with the parameters in parameters.json")
    return target


def arguments(func: Any, params: Dict[str, Any]) -> Tuple[List[Any], Dict[str, Any]]:
    """The recorded parameters as the call's arguments, by the function's signature."""
    sig = inspect.signature(func)
    before: List[Tuple[str, Any]] = []       # positional-or-keyword values before a *args
    args: List[Any] = []
    kwargs: Dict[str, Any] = {}
    missing = []
    star = False
    for name, p in sig.parameters.items():
        if p.kind is p.VAR_POSITIONAL:
            star = bool(params.get(name))
            if star:
                args += [value for _, value in before] + list(params[name])
                before = []
            continue
        if name not in params:
            if p.default is p.empty and p.kind is not p.VAR_KEYWORD:
                missing.append(name)
            continue
        if p.kind is p.VAR_KEYWORD:
            kwargs.update(params[name])
        elif p.kind is p.POSITIONAL_ONLY:
            args.append(params[name])
        elif p.kind is p.POSITIONAL_OR_KEYWORD and not star:
            before.append((name, params[name]))
        else:
            kwargs[name] = params[name]
    kwargs.update(before)
    if missing:
        raise Refused(f"{RECORD['qualname']} needs {', '.join(missing)}, which the run did not record (left out "
                      f"with exclude=?): give them with --set NAME=VALUE")
    unused = [n for n in params if n not in sig.parameters]
    if unused:
        print(f"rerun.py: note: recorded but not arguments of {RECORD['qualname']}: {', '.join(unused)}",
              file=sys.stderr)
    return args, kwargs


def shown(params: Dict[str, Any], given: Dict[str, Any]) -> str:
    """The parameters for printing, supplied values hidden (they may be secrets)."""
    out = copy.deepcopy(params)
    for name in given:
        holder, key = locate(out, path_of(out, name))
        holder[key] = "<supplied>"
    return json.dumps(out, sort_keys=True, default=repr)


def run_cell(params: Dict[str, Any]) -> None:
    path = os.path.join(HERE, RECORD["cell"])
    with open(path, encoding="utf-8") as handle:
        code = handle.read()
    try:        # IPython syntax (%magics, !commands) as the notebook ran it
        from IPython.core.inputtransformer2 import TransformerManager

        code = TransformerManager().transform_cell(code)
    except ImportError:
        pass
    sys.path.insert(0, SOURCE)
    exec(compile(code, path, "exec"), {"__name__": "__main__", **params})


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=f"Re-run run {RECORD['run']} of {RECORD['volume']} "
                                                 f"({RECORD['description']!r}).")
    parser.add_argument("--volume", metavar="CLOUDPATH", help="where the output goes (replaces the run's volume "
                                                            "in its parameters)")
    parser.add_argument("--overwrite-original", action="store_true", help="allow writing to the run's own volume")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter's value (JSON, else text); NAME is dotted for nested values")
    parser.add_argument("--values", metavar="FILE", help="a JSON file of {NAME: VALUE}: keeps secrets off the "
                                                         "command line")
    parser.add_argument("--dry-run", action="store_true", help="say what would be called, and stop")
    args = parser.parse_args(argv)
    params = copy.deepcopy(RECORD["parameters"])
    try:
        given = supplied_values(args, params)
        missing = [(dotted(p), why) for p, why in RECORD["supply"] if dotted(p) not in given]
        reasons = []
        if missing:
            reasons.append("these values were not recorded as they were, and must be supplied (--set NAME=VALUE "
                           "or --values FILE):\n" + "\n".join(f"  {name}: {why}" for name, why in missing))
        try:
            point_output(args, params)
        except Refused as exc:
            reasons.append(str(exc))
        if reasons:
            raise Refused("\n".join(reasons))
        what = RECORD["qualname"] if RECORD["kind"] == "function" else RECORD["cell"]
        if args.dry_run:
            print(f"would run {what} with {shown(params, given)}")
            return 0
        rebuild_objects(params)
        if RECORD["kind"] == "cell":
            run_cell(params)
            return 0
        func = load_function()
        call_args, call_kwargs = arguments(func, params)
    except Refused as exc:
        print(f"rerun.py: refused: {exc}", file=sys.stderr)
        return 2
    print(f"rerun.py: calling {RECORD['module']}.{what} with {shown(params, given)}", file=sys.stderr)
    func(*call_args, **call_kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
