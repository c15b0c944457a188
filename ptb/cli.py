"""The ``ptb`` command: read a volume's history back, check it, export it, add notes.

A thin layer over ptb's public functions (``ptb.history``, ``ptb.check``,
``ptb.export``, ``ptb.addnote``, ``ptb.sync``, ``ptb.flush``) with cloud-files'
conventions: click commands, cloudpaths or local paths, tqdm progress bars on
stderr. Human output by default, ``--json`` for machines. Exit status: 0 ok,
1 when a check fails or something remains (a ptb error prints one
``ptb: error: ...`` line), 2 for a usage error.
"""
from __future__ import annotations

import contextlib
import json
import sys
import warnings
from typing import Any, Callable, List, Optional

import click

from .errors import InvalidInputError, ProvenanceError
from .read import fmt, timeline
from .read import show as show_view
from .read.diff import diff as compare
from .read.diff import render_diff
from .read.runsummary import GROUP_AT, grouped
from .visible import json_text, visible


class Failure(click.ClickException):
    """A ptb error, shown as one ``ptb: error:`` line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(visible(f"ptb: error: {self.format_message()}"), err=True)


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    click.echo(visible(f"ptb: warning: {message}"), err=True)


class _Group(click.Group):
    """Turns ptb errors into a one-line message, and warnings into ``ptb: warning:`` lines."""

    def invoke(self, ctx: click.Context) -> Any:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except ProvenanceError as exc:
                raise Failure(str(exc)) from exc


class _VolumePath(click.ParamType):
    """A cloudpath, or a local directory (made ``file://`` and absolute, as cloud-files does)."""

    name = "PATH"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from .store.volume import as_cloudpath

        return as_cloudpath(str(value))


VOLUME = _VolumePath()


def _json_option(func: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (stable keys) instead of text.")(func)


def _progress_option(func: Callable) -> Callable:
    return click.option("--no-progress", is_flag=True, help="No progress bar (none is shown when stderr "
                                                           "is not a terminal anyway).")(func)


def _progress(no_progress: bool) -> bool:
    return not no_progress and sys.stderr.isatty()


def _echo_json(data: Any) -> None:
    """Exact values, with the control characters JSON leaves raw (DEL, C1, bidi) written as escapes."""
    click.echo(json_text(json.dumps(data, indent=2, ensure_ascii=False, default=str)))


_COLOURS = {"failed": "red", "interrupted": "red", "running": "yellow", "succeeded": "green",
            "motivation": "cyan", "result": "magenta", "process": "blue"}


def _style(text: str, tag: str) -> str:
    colour = _COLOURS.get(tag.strip())
    return click.style(text, fg=colour, bold=tag in ("failed", "running")) if colour else text


def _quietly(func: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call a library function with stray prints (cloud-files' credential notices) sent to stderr.

    What ptb prints on stdout stays parseable (``--json``, ``export > file``).
    """
    with contextlib.redirect_stdout(sys.stderr):
        return func(*args, **kwargs)


def _history(path: str, progress: bool = False) -> Any:
    from .read.history import history

    h = _quietly(history, path, progress=progress)
    if h.empty:
        raise Failure(f"nothing is recorded at {path}: it has no provenance file and no ptb journal "
                      f"(is the path right?)")
    return h


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="provenance-toolbox", prog_name="ptb")
def main() -> None:
    """ptb, the provenance toolbox: what was done to a volume, by whom, why, with which code.

    PATH is a cloudpath (gs://, s3://, file://, mem://, ...) or a local directory.
    """


@main.command()
@click.argument("path", type=VOLUME)
@click.option("--failures", is_flag=True, help="Only failed, interrupted and never-finished runs, and their notes.")
@click.option("--since", metavar="WHEN", help="Only entries since WHEN: 30min, 2h, 3d, 1w, or an ISO date (UTC).")
@click.option("--type", "types", multiple=True, type=click.Choice(fmt.TYPES, case_sensitive=False),
              help="Only entries of this type (repeatable).")
@click.option("-n", "--limit", type=click.IntRange(min=0), help="Only the newest N entries.")
@click.option("--runs", "every_run", is_flag=True,
              help=f"List every run and its notes, also of processes with {GROUP_AT} runs or more "
                   "(shown as one summary line otherwise).")
@_json_option
@_progress_option
def log(path: str, failures: bool, since: Optional[str], types: List[str], limit: Optional[int],
        every_run: bool, as_json: bool, no_progress: bool) -> None:
    """The history of a volume: processes, runs and notes, newest last.

    A process with many runs (a step run once per chunk) is one summary line,
    followed by its failed and never-finished runs one by one; --runs lists
    every run. --json always has every row.
    """
    try:
        since_time = fmt.parse_since(since) if since else None
    except InvalidInputError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    h = _history(path, _progress(no_progress))
    rows = timeline.select(timeline.timeline(h), failures=failures, since=since_time, types=types, limit=limit)
    if as_json:
        _echo_json(timeline.log_json(h, rows))
    else:
        click.echo(timeline.render_log(h, rows if every_run else grouped(h, rows), style=_style))


@main.command()
@click.argument("path", type=VOLUME)
@click.argument("ident", metavar="ID")
@click.option("--packages", is_flag=True, help="List every installed package (by default: how many, and those "
                                               "that differ from the process's other runs).")
@_json_option
def show(path: str, ident: str, packages: bool, as_json: bool) -> None:
    """One process or run in full, with its code environment. ID may be a unique prefix."""
    view = show_view.show(_history(path), ident)
    _echo_json(view) if as_json else click.echo(visible(show_view.render_show(view, packages=packages)))


@main.command()
@click.argument("path", type=VOLUME)
@click.argument("id1", metavar="ID1")
@click.argument("id2", metavar="ID2")
@click.option("--all", "all_rows", is_flag=True,
              help="Also list the environment details that are identical (package versions, platform, ...).")
@_json_option
def diff(path: str, id1: str, id2: str, all_rows: bool, as_json: bool) -> None:
    """Two processes or runs side by side: parameters, commit, diff, packages.

    Fields that differ are starred. A run is compared with its process and its
    own values; long texts that differ (uncommitted diffs, sources) follow as
    unified diffs.
    """
    view = compare(_history(path), id1, id2)
    _echo_json(view) if as_json else click.echo(visible(render_diff(view, all_rows=all_rows)))


@main.command()
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, type=VOLUME)
@click.option("-q", "--quiet", is_flag=True, help="Only print volumes that fail.")
@_progress_option
@_json_option
def check(paths: List[str], quiet: bool, no_progress: bool, as_json: bool) -> None:
    """Is each volume properly documented? Exit status 1 if any is not.

    Properly documented: it names its sources, holds a motivation, and every
    process records parameters and a readable code environment.
    """
    from tqdm import tqdm

    from .read.check import check as check_volume

    reports = []
    with tqdm(paths, desc="Checking", unit="volume", disable=not _progress(no_progress) or len(paths) < 2) as bar:
        for path in bar:
            result = _quietly(check_volume, path)
            reports.append(result)
            if not as_json and not (quiet and result.ok):
                lines = [("ok    " if result.ok else "FAIL  ") + result.cloudpath]
                lines += [f"      - {problem}" for problem in result.problems]
                bar.write(visible("\n".join(lines)), file=sys.stdout)
    good = sum(r.ok for r in reports)
    if as_json:
        _echo_json({"ok": good == len(reports), "volumes": [r.to_json() for r in reports]})
    elif len(reports) > 1 or not quiet:
        click.echo(f"{good} of {len(reports)} volume{'s' * (len(reports) != 1)} properly documented")
    sys.exit(0 if good == len(reports) else 1)


@main.command()
@click.argument("path", type=VOLUME)
@click.option("-f", "--format", "fmt", type=click.Choice(["prov-json", "prov-n", "dot", "html"]),
              default="prov-json", show_default=True, help="W3C PROV (JSON or PROV-N), a DOT graph, or a web page.")
@click.option("--upstream", is_flag=True, help="Follow sources that are volumes, drawing the whole lineage.")
@click.option("--any-source", is_flag=True, help="With --upstream, also follow sources that are not volumes on "
                                                 "CloudVolume's protocols (http(s)://, local directories without "
                                                 "an info file): they are read as if they were.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write here, not to stdout.")
@_progress_option
def export(path: str, fmt: str, upstream: bool, any_source: bool, output: Optional[str], no_progress: bool) -> None:
    """The provenance as W3C PROV, a DOT graph, or one self-contained HTML page.

    --upstream reads the volumes named in sources, and theirs, on gs://, s3://,
    file:// (directories that hold a volume) and mem:// only: a source names
    any address its writer chose, and reading one is a request to it.
    """
    from .read.export import export as export_volume

    _history(path)
    text = _quietly(export_volume, path, fmt, upstream=upstream, any_source=any_source,
                    progress=_progress(no_progress))
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    with open(output, "w", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(f"wrote {fmt} of {path} to {output}", err=True)


@main.command()
@click.argument("path", type=VOLUME)
@click.option("--motivation", metavar="TEXT", help="Why the volume (or a step) exists.")
@click.option("--result", metavar="TEXT", help="What came out of it.")
@click.option("--generic", metavar="TEXT", help="Anything else worth remembering.")
@_json_option
def note(path: str, motivation: Optional[str], result: Optional[str], generic: Optional[str], as_json: bool) -> None:
    """Add a note to a volume (TEXT "-" reads it from stdin)."""
    from .notes import addnote
    from .store import updater

    given = [(kind, text) for kind, text in (("MOTIVATION", motivation), ("RESULT", result), ("GENERIC", generic))
             if text is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --motivation, --result, --generic")
    kind, text = given[0]
    if text == "-":
        text = sys.stdin.read().strip()
    if not text.strip():
        raise click.UsageError("the note is empty")
    added = _quietly(addnote, path, kind, text)
    _quietly(updater.flush)
    if as_json:
        _echo_json({"volume": path, "note": added.to_json()})
    else:
        click.echo(f"added a {kind.lower()} note to {path} at {fmt.fmt_time(added.timestamp)} (id {added.id})")


@main.command()
@click.argument("path", type=VOLUME)
@_json_option
def sync(path: str, as_json: bool) -> None:
    """Pack the journal and rebuild the provenance file exactly from it."""
    from .store.updater import sync_summary

    done = _quietly(sync_summary, path)
    if as_json:
        _echo_json(done)
        return
    count = fmt.count
    click.echo(f"packed {count(done['packed'], 'journal record')} into a segment" if done["packed"]
               else "the journal was already packed")
    click.echo(f"rebuilt {done['volume']}/provenance: {count(done['processes'], 'process', 'processes')}, "
               f"{count(done['runs'], 'run')}, {count(done['notes'], 'note')}; kept "
               f"{count(done['other_entries'], 'other processing entry', 'other processing entries')}, "
               f"{count(done['sources'], 'source')}, {count(done['owners'], 'owner')}")


@main.command()
@_progress_option
@_json_option
def flush(no_progress: bool, as_json: bool) -> None:
    """Upload records spooled while a volume was unreachable. Exit status 1 if any remain."""
    from .store.spool import kept, spool_dir
    from .store.writer import flush as flush_spool

    uploaded, remaining = _quietly(flush_spool, progress=_progress(no_progress))
    remaining += kept()         # files flush will not upload (another key than ptb's, not this user's): reported
    if as_json:
        _echo_json({"uploaded": uploaded, "remaining": remaining, "spool": str(spool_dir())})
    else:
        click.echo(f"uploaded {fmt.count(uploaded, 'spooled object')}"
                   + (f"; {remaining} still spooled in {spool_dir()}" if remaining else "; nothing remains"))
    sys.exit(1 if remaining else 0)


@main.command()
@click.argument("path", type=VOLUME)
@click.argument("ident", metavar="RUN_ID")
@click.option("--into", metavar="DIR", help="Restore the run into DIR (new or empty): source/, requirements.txt, "
                                             "parameters.json, a script that calls it again, README.txt.")
@click.option("--repo", metavar="PATH_OR_URL", help="Clone this, not the recorded remote (a local clone, a mirror).")
@click.option("--inexact", is_flag=True, help="Restore what can be when something cannot be restored as recorded; "
                                              "README.txt lists the rest.")
@click.option("--check", "check_", is_flag=True, help="Compare the checkout (--source) and this Python with the "
                                                      "run's code (commit, diff, packages, Python); exit 1 if not.")
@click.option("--source", "checkout", default=".", metavar="PATH", help="With --check: the checkout (default: here).")
@_json_option
def reproduce(path: str, ident: str, into: Optional[str], repo: Optional[str], inexact: bool, check_: bool,
              checkout: str, as_json: bool) -> None:
    """Turn a run back into its code, packages and call (--into DIR), or check a checkout against it (--check)."""
    from .reproduce import command

    if (into is None) != check_:
        raise click.UsageError("give one of --into DIR and --check")
    text, status = _quietly(command, path, ident, into=into, repo=repo, inexact=inexact,
                            checkout=checkout if check_ else None, as_json=as_json)
    click.echo(text)
    sys.exit(status)


@main.command()
@click.argument("path", required=False)
@click.pass_context
def demo(ctx: click.Context, path: Optional[str]) -> None:
    """Document a small pipeline on a local volume, then print its log."""
    try:
        from .demo import run_demo
    except ImportError as exc:
        raise Failure(f"ptb demo is not available in this installation ({exc})") from None
    from .read.check import check as check_volume
    from .read.history import history

    cloudpath = _quietly(run_demo, path)
    report = check_volume(cloudpath)
    click.echo(f"documented a small pipeline on {cloudpath}")
    click.echo("it is properly documented (`ptb check` passes)\n" if report.ok else
               "ptb check finds: " + "; ".join(report.problems) + "\n")
    ctx.invoke(log, path=cloudpath, failures=False, since=None, types=(), limit=None, every_run=False,
               as_json=False)
    failed = [r.id for r in history(cloudpath, with_envs=False).runs if r.status == "failed"]
    directory = cloudpath[len("file://"):] if cloudpath.startswith("file://") else cloudpath
    click.echo(f"\nthe volume (and its source, raw/) is in {directory}; next, try:")
    for command in ([f"ptb show {cloudpath} {failed[0][:12]}"] if failed else []) + [
            f"ptb check {cloudpath}", f"ptb export {cloudpath} -f html -o demo.html"]:
        click.echo(f"  {command}")


from .command import run_cli  # noqa: E402 (ptb run: its own module)
from .lab.commands import COMMANDS as _LAB  # noqa: E402  (ptb status, find, watch: many volumes at once)

main.add_command(run_cli)
for _command in _LAB:
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    main()
