"""``ptb run``: a command-line step (igneous, any tool) documented as a run, through the same engine.

``run_command(volume, description, argv)`` documents one execution of
``argv`` on ``volume`` and returns the exit status ``ptb run`` exits with:

* the process's parameters are ``{"command": [argv...]}``, secrets redacted as
  in any parameter (the value after ``--password``, ``--token``, ``--key``...,
  ``--token=...``, URL credentials, and the ``redact`` names); the same argv
  from many workers is one process with many runs;
* the code environments are the working directory's git checkout (with the
  installed packages) and the command's own installation
  (``ptb.capture.program``: ``CodeEnv type`` ``Command``, with ``argv0``,
  ``executable`` and, for a Python console script, ``distribution`` and
  ``version``);
* stdin and stdout are the command's own; stderr passes through as it comes
  (through a pseudo-terminal when ptb's stderr is a terminal, so the command
  still sees one), and its last lines are kept for the failure note;
* exit status 0 is ``succeeded``; any other is ``failed``, with a failure note
  naming the status and holding the last lines of stderr (bounded, scrubbed);
  killed by signal N, ``ptb run`` exits 128+N as a shell does. SIGINT and
  SIGTERM sent to ``ptb run`` are forwarded to the command and the run is
  ``interrupted`` (a Ctrl-C at a terminal already reaches the command, which
  is in the same process group, so it is not sent twice).

The click command (``run_cli``) is registered by ``ptb.cli``.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import click

from .errors import InvalidInputError
from .run import Run
from .store.volume import Volume, as_cloudpath

__all__ = ["run_command", "run_cli", "CommandFailed", "CommandInterrupted", "CommandNotFound"]

TAIL_LINES = 40                 # lines of stderr kept for the failure
TAIL_BYTES = 8 * 1024           # ... and at most this much of them
NOTE_TAIL = 1500                # characters of that tail in the failure note
_FORWARDED = (signal.SIGINT, signal.SIGTERM)


class CommandFailed(Exception):
    """What a failed command is recorded as: its exit status, and the last lines of its stderr."""

    def __init__(self, message: str, tail: str) -> None:
        super().__init__(message)
        self.ptb_detail = tail          # stored in place of a traceback (``capture.errortext.error_of``)


class CommandInterrupted(KeyboardInterrupt):
    """A command stopped by SIGINT or SIGTERM: the run is ``interrupted``."""

    def __init__(self, message: str, tail: str) -> None:
        super().__init__(message)
        self.ptb_detail = tail


class CommandNotFound(InvalidInputError):
    """``argv[0]`` is not a file nor found on ``PATH``: nothing ran, nothing is recorded (exit status 127)."""


# ---------------------------------------------------------------- stderr
class _Tee:
    """Copies the command's stderr to ours as it comes, keeping its last ``TAIL_BYTES``."""

    def __init__(self, fd: int, pty: bool) -> None:
        self.fd, self.pty, self.tail = fd, pty, bytearray()
        self.thread = threading.Thread(target=self._pump, name="ptb-run-stderr", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        out = sys.stderr.fileno() if _has_fileno(sys.stderr) else None
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:         # EIO: the pseudo-terminal's last writer is gone
                break
            if not data:
                break
            if out is not None:
                _write_all(out, data)
            else:
                with contextlib.suppress(Exception):
                    sys.stderr.write(data.decode("utf-8", "replace"))
                    sys.stderr.flush()
            self.tail += data
            del self.tail[:-TAIL_BYTES]
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def text(self) -> str:
        """The last lines, as a terminal would have shown them (a progress bar's ``\\r`` updates folded)."""
        lines = bytes(self.tail).decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
        if len(self.tail) >= TAIL_BYTES:
            lines = lines[1:]           # the first one was cut
        shown = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines]
        while shown and not shown[-1].strip():
            shown.pop()
        return "\n".join(shown[-TAIL_LINES:])


def _has_fileno(stream: Any) -> bool:
    try:
        stream.fileno()
        return True
    except Exception:       # pytest's capture, click's CliRunner
        return False


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):     # our stderr closed: keep draining the command's
        while data:
            data = data[os.write(fd, data):]


def _stderr_target() -> Tuple[Any, Optional[int], bool]:
    """What the command's stderr is (a pty's slave end or a pipe), the fd ptb reads, and whether it is a pty."""
    if _has_fileno(sys.stderr) and os.isatty(sys.stderr.fileno()) and hasattr(os, "openpty"):
        try:
            master, slave = os.openpty()
            _copy_window_size(sys.stderr.fileno(), slave)
            return slave, master, True
        except OSError:
            pass
    return subprocess.PIPE, None, False


def _copy_window_size(src: int, dst: int) -> None:
    with contextlib.suppress(Exception):
        import fcntl
        import termios

        fcntl.ioctl(dst, termios.TIOCSWINSZ, fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))


# ---------------------------------------------------------------- signals
def _at_terminal() -> bool:
    """Whether ptb is in the foreground process group of its terminal: a Ctrl-C there reaches the command too."""
    if not hasattr(os, "tcgetpgrp"):        # no process groups (Windows): forward every signal
        return False
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
    return False


@contextlib.contextmanager
def _forwarding(proc: subprocess.Popen, received: List[int]) -> Any:
    """SIGINT and SIGTERM to ptb go to the command (a terminal's Ctrl-C already did); ptb waits for it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, _frame: Any) -> None:
        received.append(signum)
        if signum == signal.SIGINT and _at_terminal():
            return
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signum)

    # a signal ptb was started ignoring (nohup, a shell's background job) stays ignored, by the command too
    before = {sig: signal.signal(sig, forward) for sig in _FORWARDED if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------- the step
def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _outcome(argv0: str, returncode: int, received: Sequence[int], tail: str) -> Optional[BaseException]:
    """None for success; else what the run records: ``CommandInterrupted`` or ``CommandFailed``."""
    if returncode == 0:
        return None
    name = os.path.basename(argv0)
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        message = f"{name} was killed by {sig} (exit status {_exit_status(returncode)})"
    else:
        message = f"{name} exited with status {returncode}"
    if received or -returncode in _FORWARDED:
        why = signal.Signals(received[0]).name if received else signal.Signals(-returncode).name
        return CommandInterrupted(f"{message} after ptb run received {why}", tail)
    return CommandFailed(message, tail)


def run_command(volume: Any, description: str, argv: Sequence[str], *, motivation: Optional[str] = None,
                result: Optional[str] = None, per_run: Optional[Dict[str, Any]] = None, redact: Sequence[str] = (),
                secrets: Any = None) -> int:
    """Run ``argv`` documented as a run of ``description`` on ``volume``; the exit status ``ptb run`` exits with.

    ``per_run`` are this run's own values (``NAME=VALUE`` of ``--per-run``),
    not the process's. A volume that cannot be written, or a command that is
    not found (``CommandNotFound``), is a ptb error before anything ran.
    """
    from .capture.program import command_env

    argv = [str(a) for a in argv]
    if not argv:
        raise InvalidInputError("no command to run: ptb run VOLUME DESCRIPTION [OPTIONS] -- COMMAND [ARG]...")
    target = as_cloudpath(volume) if isinstance(volume, str) else volume
    vol = Volume.resolve(target, secrets)
    env = command_env(argv)
    if env.executable is None:
        raise CommandNotFound(f"command not found: {argv[0]} (nothing ran, nothing was recorded)")
    values = dict(per_run or {})
    run = Run([vol], description, {"command": argv, **values}, motivation=motivation, result=result,
              redact=redact, sources=[env], per_run=list(values))
    with contextlib.redirect_stdout(sys.stderr):     # ptb's own notices never mix with the command's stdout
        run.start()
    received: List[int] = []
    stderr, fd, pty = _stderr_target()
    try:
        proc = subprocess.Popen(argv, stderr=stderr)
    except OSError as exc:       # found but not executable
        with contextlib.redirect_stdout(sys.stderr):
            run.finish(exc)
        raise InvalidInputError(f"cannot run {argv[0]}: {exc}") from None
    finally:
        if pty:
            os.close(stderr)
    tee = _Tee(fd if pty else proc.stderr.fileno(), pty)   # type: ignore[union-attr, arg-type]
    with _forwarding(proc, received):
        returncode = proc.wait()
        tee.thread.join(timeout=2.0)       # a daemon it started may hold stderr open: do not wait for it
        with contextlib.redirect_stdout(sys.stderr):
            run.finish(_outcome(argv[0], returncode, received, tee.text()))
    return _exit_status(returncode)


# ---------------------------------------------------------------- the click command
class _AfterDoubleDash(click.Command):
    """Everything after ``--`` is the command, never ptb's options (``python -m x`` keeps its ``-m``)."""

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        if "--" not in args:
            if any(a in ("-h", "--help") for a in args):
                return super().parse_args(ctx, args)
            raise click.UsageError("put the command after --: ptb run VOLUME DESCRIPTION [OPTIONS] -- COMMAND "
                                   "[ARG]...", ctx)
        split = args.index("--")
        ctx.meta["ptb.command"] = args[split + 1:]
        return super().parse_args(ctx, args[:split])


def _per_run_value(item: str) -> Tuple[str, Any]:
    name, sep, text = item.partition("=")
    if not sep or not name.strip():
        raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--per-run")
    try:
        value = json.loads(text)        # numbers, [128, 128, 0], true; anything else is text
    except ValueError:
        value = text
    return name.strip(), value


@click.command("run", cls=_AfterDoubleDash)
@click.argument("volume", metavar="VOLUME")
@click.argument("description")
@click.option("-m", "--motivation", metavar="TEXT", help="Why the step is run (the motivation note).")
@click.option("-r", "--result", metavar="TEXT", help="The result note when it succeeds.")
@click.option("--per-run", "per_run", metavar="NAME=VALUE", multiple=True,
              help="A value of this run only (the chunk or worker it is), not of the step; repeatable. "
                   "VALUE is JSON when it parses ([128, 128, 0], 3), else text.")
@click.option("--redact", metavar="NAME", multiple=True,
              help="One more flag whose value is secret (--redact lab-code hides the value after --lab-code).")
@click.pass_context
def run_cli(ctx: click.Context, volume: str, description: str, motivation: Optional[str], result: Optional[str],
            per_run: Tuple[str, ...], redact: Tuple[str, ...]) -> None:
    """Run COMMAND (everything after --) documented as one run of DESCRIPTION on VOLUME.

    The command's argv is the step's parameters (secrets redacted), its exit
    status the run's outcome and ptb run's own (128+N when killed by signal
    N), the last lines of its stderr the failure note. stdin, stdout and
    stderr are the command's. Example:

      ptb run ./layer "downsample" -- igneous image downsample ./layer --queue fq://q
    """
    values = dict(_per_run_value(item) for item in per_run)
    try:
        code = run_command(volume, description, ctx.meta.get("ptb.command") or [], motivation=motivation,
                           result=result, per_run=values, redact=redact)
    except CommandNotFound as exc:
        click.echo(f"ptb: error: {exc}", err=True)
        ctx.exit(127)
    ctx.exit(code)
