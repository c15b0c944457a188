"""The ``%%provenance`` cell magic: a notebook cell documented as a run.

``%load_ext ptb`` registers it; then::

    %%provenance VOLUME "what this cell does" [-m MOTIVATION] [-r RESULT] [-p NAME[,NAME...]]

VOLUME is a cloudpath, or the name (or expression) of a notebook variable
holding a CloudVolume, a cloudpath or a list of them. ``-p`` records the
values of notebook variables as parameters; ``--per-run`` does too, as this
run's own values (the chunk the cell works on) rather than the step's. The
cell runs through the same engine as ``ptb.documented``, and its source is
recorded with the run, scrubbed
of secrets (``ptb.capture.redact.scrubbed``: ``Authorization:`` headers,
``password=...``, URL credentials, the ``--redact`` names). Inside it,
``ptb.current_run().note(...)`` adds notes. IPython is imported only here.
"""
from __future__ import annotations

import ast
import os
import shlex
from typing import Any, List, Tuple

from .errors import InvalidInputError

__all__ = ["execute", "load_ipython_extension", "prepare"]

USAGE = ('%%provenance VOLUME "description" [-m MOTIVATION] [-r RESULT] [-p NAME[,NAME...]] '
         '[--per-run NAME[,NAME...]] [--redact NAME] [--exclude NAME]')


def _parser() -> Any:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise InvalidInputError(f"{message}\nusage: {USAGE}")

    parser = Parser(prog="%%provenance", add_help=False)
    parser.add_argument("volume")
    parser.add_argument("description")
    parser.add_argument("-m", "--motivation")
    parser.add_argument("-r", "--result")
    parser.add_argument("-p", "--parameters", action="append", default=[])
    parser.add_argument("--per-run", action="append", default=[])
    parser.add_argument("--redact", action="append", default=[])
    parser.add_argument("--exclude", action="append", default=[])
    return parser


def _names(values: List[str]) -> List[str]:
    return [name for value in values for name in value.replace(",", " ").split()]


def _volumes(shell: Any, text: str) -> Any:
    if "://" in text:
        return text
    try:
        return shell.ev(text)
    except Exception as exc:
        raise InvalidInputError(f"%%provenance: {text!r} is neither a cloudpath nor a notebook variable "
                                f"holding a volume ({type(exc).__name__}: {exc})") from None


def _compile(shell: Any, cell: str) -> Any:
    """The cell as IPython would run it: code for the statements, and for the last expression."""
    code = shell.transform_cell(cell)
    tree = shell.transform_ast(shell.compile.ast_parse(code))
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not code.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    try:
        filename = shell.compile.cache(code, shell.execution_count, raw_code=cell)
    except Exception:
        filename = "<provenance cell>"
    body = shell.compile(tree, filename, "exec")
    return body, (shell.compile(last, filename, "eval") if last is not None else None), filename


def prepare(shell: Any, line: str, cell: str) -> Tuple[Any, Any, Any]:
    """The run, and the cell's compiled code; ``InvalidInputError`` for a bad magic line."""
    from .arguments import targets
    from .capture.redact import scrubbed
    from .capture.secretvalues import secret_values
    from .capture.source import SourceEnv
    from .run import Run
    from .store.volume import Volume

    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise InvalidInputError(f"%%provenance: {exc} in {line!r}\nusage: {USAGE}") from None
    args = _parser().parse_args(words)
    per_run = _names(args.per_run)
    names = _names(args.parameters) + [n for n in per_run if n not in _names(args.parameters)]
    missing = [n for n in names if n not in shell.user_ns]
    if missing:
        raise InvalidInputError(f"%%provenance -p/--per-run: no notebook variable named "
                                f"{', '.join(map(repr, missing))}")
    parameters = {n: shell.user_ns[n] for n in names}
    vols = [Volume.resolve(v) for v in targets(_volumes(shell, args.volume))]
    body, last, filename = _compile(shell, cell)      # a syntax error fails here, before any run starts
    session = shell.user_ns.get("__session__") or shell.user_ns.get("__vsc_ipynb_file__")
    notebook = session if isinstance(session, str) else None
    redact = _names(args.redact)
    text = scrubbed(cell, redact, secret_values(parameters, redact))     # secrets in the cell never reach the volume
    source = SourceEnv(f"cell-{os.path.basename(notebook)}" if notebook else "cell", text, notebook or filename)
    run = Run(vols, args.description, parameters, motivation=args.motivation, result=args.result,
              redact=redact, exclude=_names(args.exclude), sources=[source], per_run=per_run)
    return run, body, last


def execute(shell: Any, run: Any, body: Any, last: Any) -> Any:
    """Run the cell in the notebook's namespace as the documented run; returns its last expression's value.

    The cell's own exceptions propagate unchanged, after being recorded.
    """
    with run:
        exec(body, shell.user_ns)
        return eval(last, shell.user_ns) if last is not None else None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ptb``: register the ``%%provenance`` cell magic."""
    from IPython.core.error import UsageError

    def provenance(line: str, cell: str) -> Any:
        try:
            prepared = prepare(ipython, line, cell)
        except InvalidInputError as exc:
            raise UsageError(str(exc)) from None
        return execute(ipython, *prepared)

    provenance.__doc__ = f"Document this cell as a run on a volume.\n\n{USAGE}\n\n{__doc__}"
    ipython.register_magic_function(provenance, magic_kind="cell", magic_name="provenance")
