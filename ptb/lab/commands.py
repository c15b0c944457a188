"""The lab's commands: ``ptb status``, ``ptb find`` and ``ptb watch`` (``ptb.cli`` adds them to ``ptb``).

Thin, as the rest of the command line: the answers come from ``status``,
``find`` and ``watch``; here they are printed (text, or ``--json``), with a
tqdm bar on stderr while many volumes are read. Exit status: ``status`` 1
when a volume could not be read; ``find`` 1 when nothing matched (as grep);
``watch`` 1 when a watched step has failed, interrupted or never-finished runs.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import click

from ..read.fmt import one_line
from . import find as finder
from . import status as stater


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _digests(prefixes: List[str], no_cache: bool, no_progress: bool) -> Any:
    """The volumes under ``prefixes`` and their digests, with a bar on stderr (a terminal's only)."""
    from tqdm import tqdm

    from ..store.volume import as_cloudpath
    from .scan import digests_under

    bar: Dict[str, Any] = {}

    def progress(total: int) -> Callable[[], None]:
        bar["bar"] = tqdm(total=total, desc="Reading", unit="volume", file=sys.stderr, leave=False,
                          disable=no_progress or not sys.stderr.isatty() or total < 2)
        return lambda: bar["bar"].update(1)

    try:
        with contextlib.redirect_stdout(sys.stderr):     # cloud-files' notices never reach stdout
            found, digests = digests_under([as_cloudpath(p) for p in prefixes], cache=not no_cache, progress=progress)
    finally:
        if "bar" in bar:
            bar["bar"].close()
    if not found:
        raise click.ClickException(f"no volumes at or under {', '.join(prefixes)} (a volume is a directory "
                                   f"with info, provenance or ptb/)")
    return found, digests


def _common(func: Callable) -> Callable:
    for option in (click.option("--json", "as_json", is_flag=True, help="Print JSON (stable keys) instead of text."),
                   click.option("--no-cache", is_flag=True, help="Read every volume in full, bypassing the "
                                                                 "local index (nothing is read from or saved to it)."),
                   click.option("--no-progress", is_flag=True, help="No progress bar (none is shown when stderr "
                                                                    "is not a terminal anyway)."),
                   click.argument("prefixes", metavar="PREFIX...", nargs=-1, required=True)):
        func = option(func)
    return func


@click.command()
@_common
def status(prefixes: List[str], as_json: bool, no_cache: bool, no_progress: bool) -> None:
    """One line per volume at or under each PREFIX, and a total.

    PREFIX is a volume, or a directory or cloudpath above volumes (found
    recursively: a directory with info, provenance or ptb/). Each line: its
    processes, its runs by status (running apart from never finished), its
    last activity, and whether `ptb check` passes. Only what changed since
    the last query is read (see --no-cache).
    """
    _, digests = _digests(prefixes, no_cache, no_progress)
    rows = [stater.row(d) for d in digests]
    if as_json:
        _echo_json({"volumes": rows, "total": stater.total(rows)})
    else:
        click.echo(stater.render(rows))
    sys.exit(1 if any("error" in r for r in rows) else 0)


@click.command()
@_common
@click.option("--commit", metavar="SHA_PREFIX", help="Runs whose code was at this commit.")
@click.option("--package", metavar="NAME[==VERSION]",
              help="Runs with this distribution installed (or this tool, for `ptb run` steps); "
                   "4.36 matches 4.36.0, 4.36.* any 4.36.")
@click.option("--param", "params", metavar="KEY=VALUE", multiple=True,
              help="A parameter of the step, or a run's own value (repeatable; VALUE read as JSON when it is).")
@click.option("--status", "run_status", type=click.Choice(finder.STATUSES, case_sensitive=False),
              help="Runs in this state.")
@click.option("--description", metavar="TEXT", help="Steps whose description contains TEXT (any case).")
def find(prefixes: List[str], as_json: bool, no_cache: bool, no_progress: bool, commit: Optional[str],
         package: Optional[str], params: List[str], run_status: Optional[str], description: Optional[str]) -> None:
    """The steps, in the volumes at or under each PREFIX, whose runs match every filter.

    One row per (volume, process), with its matching runs counted. Each run
    is judged by the code it ran with. Exit status 1 when nothing matches.
    """
    from ..errors import InvalidInputError

    try:
        filters = finder.Filters.make(commit, package, params, run_status, description)
    except InvalidInputError as exc:
        raise click.UsageError(str(exc)) from None
    found, digests = _digests(prefixes, no_cache, no_progress)
    rows = finder.rows(digests, filters)
    if as_json:
        _echo_json(rows)
    else:
        click.echo(finder.render(rows, len(found)))
    sys.exit(0 if rows else 1)


@click.command()
@click.argument("volume", metavar="VOLUME")
@click.option("--expect", type=click.IntRange(min=1), metavar="N",
              help="How many runs (chunks) the step will have, for its rate and ETA.")
@click.option("--process", "process", metavar="ID", help="Only this process (a prefix of its key, as `ptb log` shows).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True, metavar="SECONDS",
              help="Seconds between two looks at the journal.")
@click.option("--idle", type=click.FloatRange(min=0), default=60.0, show_default=True, metavar="SECONDS",
              help="Stop when no watched run has been running for this long.")
def watch(volume: str, expect: Optional[int], process: Optional[str], interval: float, idle: float) -> None:
    """Follow a volume's running steps live: a progress bar per process.

    Done, failed and running runs, the rate, and an ETA when the number of
    runs is known (--expect, or a per-run value such as `total`); failures
    are printed as they happen. Stops at Ctrl-C, or when nothing has been
    running for --idle seconds; then prints one summary line per process.
    """
    from ..store.volume import as_cloudpath
    from .discover import discover
    from .watch import Watcher

    path = as_cloudpath(volume)
    with contextlib.redirect_stdout(sys.stderr):
        if not discover(path, depth=0):
            raise click.ClickException(f"no volume at {path} (a volume is a directory with info, provenance "
                                       f"or ptb/)")
    watcher = Watcher(path, process)
    with contextlib.redirect_stdout(sys.stderr):
        lines = _follow(watcher, expect, interval, idle, sys.stderr.isatty())
    for line in lines:
        click.echo(line)
    now = datetime.datetime.now(datetime.timezone.utc)
    bad = any(sum(watcher.processes[k].counts(now)[s] for s in ("failed", "interrupted", "never finished"))
              for k in watcher.watched)
    sys.exit(1 if bad else 0)


def _follow(watcher: Any, expect: Optional[int], interval: float, idle: float, tty: bool) -> List[str]:
    """Poll and draw until idle or Ctrl-C; returns the summary lines."""
    from tqdm import tqdm

    from .watch import event_line, summary_line

    bars: Dict[str, Any] = {}
    printed: Dict[str, Any] = {}
    started = time.monotonic()
    moved: Dict[str, Any] = {}          # per process: (chunks done, when that count was first seen)

    def rate(key: str) -> Optional[float]:
        """Chunks done per second while watched, up to the last one seen done."""
        progress = watcher.processes[key]
        done = progress.done()
        if moved.get(key, (None,))[0] != done:
            moved[key] = (done, time.monotonic())
        new, elapsed = done - (progress.done_at_start or 0), moved[key][1] - started
        return new / elapsed if new > 0 and elapsed > 0 else None

    def draw() -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        for key in watcher.watched:
            progress = watcher.processes[key]
            total, counts, speed = progress.expected(expect), progress.counts(now), rate(key)
            if not tty:
                line = summary_line(progress, total, now, speed)
                last_counts, last_time = printed.get(key, (None, -9.0))
                if last_counts != counts and time.monotonic() - last_time >= 5:
                    printed[key] = (counts, time.monotonic())
                    click.echo(line, err=True)
                continue
            lost = f", {counts['never finished']:,} never finished" if counts["never finished"] else ""
            postfix = f"{counts['failed']:,} failed, {counts['running']:,} running{lost}"
            if key not in bars:
                bars[key] = tqdm(total=total, initial=counts["done"], desc=one_line(progress.description, 30),
                                 unit="run", position=len(bars), file=sys.stderr, dynamic_ncols=True, postfix=postfix)
            bar = bars[key]
            bar.set_postfix_str(postfix, refresh=False)
            if total and bar.total != total:
                bar.total = total
            if counts["done"] > bar.n:
                bar.update(counts["done"] - bar.n)
            else:
                bar.refresh()

    events = watcher.poll()
    if not watcher.watched:
        click.echo(f"nothing is running on {watcher.vol.cloudpath} yet; waiting (up to {idle:g} s)", err=True)
    try:
        while True:
            draw()
            for event in events:
                line = event_line(event, watcher.processes[event.process].description)
                tqdm.write(line, file=sys.stderr) if tty else click.echo(line, err=True)
            if watcher.running() == 0 and time.monotonic() - watcher.last_record >= idle:
                break
            time.sleep(interval)
            events = watcher.poll()
    except KeyboardInterrupt:
        pass
    finally:
        for bar in bars.values():
            bar.close()
    now = datetime.datetime.now(datetime.timezone.utc)
    return [summary_line(watcher.processes[k], watcher.processes[k].expected(expect), now, rate(k))
            for k in watcher.watched] or [f"nothing ran on {watcher.vol.cloudpath} while watched"]


COMMANDS = (status, find, watch)
