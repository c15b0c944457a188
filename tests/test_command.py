"""``ptb run``: a command-line step documented through the same engine (issue 20), in real OS processes.

Every test runs ``python -m ptb run ... -- COMMAND`` as a user would: its
stdin, stdout and stderr, its exit status, the signals sent to it, and what
it leaves on the volume. The commands are small Python programs (``CHILD``)
so that each behaviour (an exit status, a signal handled or not, a line of
stderr while it still runs) is exact; tests/test_igneous.py runs igneous.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import volumes

import ptb
from ptb.read.history import history

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def env_for(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "PTB_SPOOL_DIR": str(tmp_path / "spool"), "PYTHONUNBUFFERED": "1"}


def ptb_run(tmp_path: Path, *args: str, input: bytes = b"", timeout: float = 120,
            **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "ptb", "run", *args], input=input, capture_output=True, timeout=timeout,
                          cwd=tmp_path, env=env_for(tmp_path), **kwargs)


def start_ptb_run(tmp_path: Path, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "ptb", "run", *args], cwd=tmp_path, env=env_for(tmp_path),
                            start_new_session=True, **kwargs)


@pytest.fixture
def vol(tmp_path):
    path = f"file://{tmp_path / 'v'}"
    volumes.make_volume(path)
    return path


def only_run(path):
    h = history(path)
    (run,) = h.runs
    return h, run, h.process(run.process)


def envs_of(h, record):
    return {h.envs[f]["CodeEnv type"]: h.envs[f] for f in record.code_envfiles}


def volume_text(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def wait_for_line(stream, text: bytes, timeout: float = 60) -> bytes:
    """Read ``stream`` (a pipe) until ``text`` shows up; fail after ``timeout`` s without blocking forever."""
    seen, deadline = b"", time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{text!r} never came; got {seen!r}"
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, f"the stream ended before {text!r}; got {seen!r}"
            seen += chunk
    return seen


# ------------------------------------------------------------------ success
def test_a_console_script_is_one_run_with_its_argv_and_installation(tmp_path, vol):
    done = ptb_run(tmp_path, vol, "print pytest's version", "-m", "which pytest", "-r", "printed it",
                   "--", "pytest", "--version")
    assert done.returncode == 0, done.stderr
    assert b"pytest" in done.stdout + done.stderr            # pytest's own output, not ptb's
    h, run, process = only_run(vol)
    assert process.parameters == {"command": ["pytest", "--version"]}
    assert run.status == "succeeded" and run.parameters == {} and run.duration > 0
    assert run.argv is not None and run.argv[1:3] == ("run", vol)       # the ptb run invocation itself
    command = envs_of(h, run)["Command"]
    assert command["argv0"] == "pytest" and os.path.isabs(command["executable"])
    assert command["distribution"].lower() == "pytest" and command["version"] == importlib.metadata.version("pytest")
    assert command["entry point"].startswith("pytest") and len(command["sha256"]) == 64
    assert command["cwd"] == str(tmp_path)
    assert "PythonGithub" in envs_of(h, run)          # the working directory's environment
    notes = {n.note_type.name: n.content for n in h.notes_of(run.id)}
    assert notes == {"MOTIVATION": "which pytest", "RESULT": "printed it"}


def test_stdin_and_stdout_pass_through_unchanged(tmp_path, vol):
    data = bytes(range(256)) * 40
    code = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read()[::-1])"
    done = ptb_run(tmp_path, vol, "reverse", "--", PYTHON, "-c", code, input=data)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data[::-1]
    assert done.stderr == b""                   # ptb adds nothing of its own


def test_stderr_passes_through_live_and_unchanged(tmp_path, vol):
    code = ("import sys; sys.stderr.buffer.write(b'ready \\xff\\r\\n'); sys.stderr.flush(); "
            "sys.stdin.read(); sys.stderr.write('done\\n')")
    proc = start_ptb_run(tmp_path, vol, "wait", "--", PYTHON, "-c", code, stdin=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        seen = wait_for_line(proc.stderr, b"ready")      # while the command still runs: it waits for stdin
        assert proc.poll() is None
        out, err = proc.communicate(b"", timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0
    assert seen + err == b"ready \xff\r\ndone\n"


def test_stderr_is_a_terminal_when_ptbs_is(tmp_path, vol):
    master, slave = os.openpty()
    try:
        code = "import os, sys; print(os.isatty(2)); sys.stderr.write('on the terminal\\n')"
        proc = start_ptb_run(tmp_path, vol, "tty", "--", PYTHON, "-c", code, stdout=subprocess.PIPE,
                             stderr=slave)
        os.close(slave)
        out, _ = proc.communicate(timeout=120)
        terminal = b""
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0 and out.strip() == b"True"
    assert b"on the terminal" in terminal


# ------------------------------------------------------------------ failure
def test_a_failure_exits_with_the_status_and_keeps_the_last_lines_of_stderr(tmp_path, vol):
    secret = "tok-" + "9" * 12
    code = ("import sys\n"
            "for i in range(5000): sys.stderr.write(f'progress {i}\\r')\n"
            "for i in range(100): sys.stderr.write(f'line {i}\\n')\n"
            f"sys.stderr.write('Error: token={secret} refused\\n')\n"
            "sys.exit(3)")
    done = ptb_run(tmp_path, vol, "fail", "--", PYTHON, "-c", code)
    assert done.returncode == 3
    assert done.stderr.endswith(f"Error: token={secret} refused\n".encode())      # unchanged on the terminal
    h, run, _ = only_run(vol)
    assert run.status == "failed"
    assert run.error["type"] == "ptb.command.CommandFailed"
    assert run.error["message"] == f"{os.path.basename(PYTHON)} exited with status 3"
    tail = run.error["traceback"]
    assert tail.endswith("Error: token=<redacted> refused") and "line 99" in tail and "line 0\n" not in tail
    assert len(tail) <= 8 * 1024 and "progress" not in tail.split("\n", 1)[1]    # a progress bar folds
    (note,) = [n.content for n in h.notes_of(run.id) if n.note_type.name == "RESULT"]
    assert note.startswith("failed after ") and "exited with status 3" in note
    assert "last lines of stderr:" in note and note.endswith("Error: token=<redacted> refused")
    assert len(note) < 2200
    assert secret not in volume_text(tmp_path / "v")


def test_killed_by_a_signal_exits_128_plus_n(tmp_path, vol):
    code = ("import os, signal, sys; sys.stderr.write('bye\\n'); sys.stderr.flush(); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    done = ptb_run(tmp_path, vol, "killed", "--", PYTHON, "-c", code)
    assert done.returncode == 128 + signal.SIGKILL
    _, run, _ = only_run(vol)
    assert run.status == "failed" and "killed by SIGKILL (exit status 137)" in run.error["message"]
    assert run.error["traceback"] == "bye"


def test_sigterm_is_forwarded_and_the_run_is_interrupted(tmp_path, vol):
    code = ("import signal, sys, time\n"
            "def stop(n, f):\n    sys.stderr.write('cleaning up\\n'); sys.exit(4)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "sys.stderr.write('working\\n'); sys.stderr.flush()\n"
            "time.sleep(120)")
    proc = start_ptb_run(tmp_path, vol, "long", "--", PYTHON, "-c", code, stderr=subprocess.PIPE)
    try:
        wait_for_line(proc.stderr, b"working")
        proc.send_signal(signal.SIGTERM)              # to ptb only: it forwards
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 4 and b"cleaning up" in err
    _, run, _ = only_run(vol)
    assert run.status == "interrupted" and "after ptb run received SIGTERM" in run.error["message"]


def test_sigint_from_outside_a_terminal_is_forwarded(tmp_path, vol):
    code = "import sys, time\nsys.stderr.write('working\\n'); sys.stderr.flush()\ntime.sleep(120)"
    proc = start_ptb_run(tmp_path, vol, "long", "--", PYTHON, "-c", code, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    try:
        wait_for_line(proc.stderr, b"working")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signal.SIGINT        # Python died of the KeyboardInterrupt: by SIGINT
    assert b"KeyboardInterrupt" in err
    _, run, _ = only_run(vol)
    assert run.status == "interrupted" and "KeyboardInterrupt" in run.error["traceback"]


# ------------------------------------------------------------------ parameters
def test_secrets_in_argv_never_reach_the_volume(tmp_path, vol):
    password, token, url_pw, lab = "hunter2-" + "x" * 8, "tok3n-" + "y" * 8, "pw-" + "z" * 10, "lab-" + "q" * 8
    args = ["--password", password, f"--token={token}", f"https://alice:{url_pw}@example.org/data",
            "--lab-code", lab, "--mip", "2"]
    code = "import sys; sys.stderr.write(' '.join(sys.argv[1:]) + '\\n'); sys.exit(1)"
    done = ptb_run(tmp_path, vol, "secret step", "--redact", "lab-code", "--", PYTHON, "-c", code, *args)
    assert done.returncode == 1
    _, run, process = only_run(vol)
    assert process.parameters == {"command": [PYTHON, "-c", code, "--password", "<redacted>",
                                              "--token=<redacted>", "https://example.org/data",
                                              "--lab-code", "<redacted>", "--mip", "2"]}
    stored = volume_text(tmp_path / "v")
    for secret in (password, token, url_pw, lab):
        assert secret not in stored               # in the argv, sys.argv, the stderr tail and the note alike
    assert "--mip 2" in run.error["traceback"]


def test_workers_with_the_same_argv_are_one_process_with_many_runs(tmp_path, vol):
    procs = [start_ptb_run(tmp_path, vol, "workers", "--per-run", f"worker={i}", "--per-run", "chunk=[64, 0, 0]",
                           "--per-run", "node=n01", "--", PYTHON, "-c", "print('ok')", stdout=subprocess.PIPE)
             for i in range(2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out == b"ok\n"
    h = history(vol)
    (process,) = h.processes
    assert process.parameters == {"command": [PYTHON, "-c", "print('ok')"]}
    runs = h.runs_of(process.key)
    assert sorted(r.parameters["worker"] for r in runs) == [0, 1]
    assert {json.dumps(r.parameters, sort_keys=True) for r in runs} == {
        json.dumps({"worker": i, "chunk": [64, 0, 0], "node": "n01"}, sort_keys=True) for i in range(2)}
    assert len({r.pid for r in runs}) == 2


def test_a_local_path_is_a_volume(tmp_path, vol):
    done = ptb_run(tmp_path, "./v", "relative", "--", PYTHON, "-c", "pass")
    assert done.returncode == 0, done.stderr
    assert [r.description for r in history(vol).runs] == ["relative"]


# ------------------------------------------------------------------ usage
def test_a_command_not_found_exits_127_and_records_nothing(tmp_path, vol):
    done = ptb_run(tmp_path, vol, "nothing", "--", "no-such-command-ptb-20")
    assert done.returncode == 127
    assert done.stderr.decode().startswith("ptb: error: command not found: no-such-command-ptb-20")
    assert not history(vol).runs and not (tmp_path / "v" / "ptb").exists()


def test_the_command_must_follow_a_double_dash(tmp_path, vol):
    done = ptb_run(tmp_path, vol, "no dash", PYTHON, "-m", "this")
    assert done.returncode == 2 and b"put the command after --" in done.stderr
    done = ptb_run(tmp_path, vol, "empty", "--")
    assert done.returncode == 1 and b"no command to run" in done.stderr
    assert not history(vol).runs
    done = ptb_run(tmp_path, vol, "dash m", "--", PYTHON, "-m", "json.tool", input=b'{"a": 1}')
    assert done.returncode == 0 and json.loads(done.stdout) == {"a": 1}      # -m is the command's, not ptb's
    assert ptb.history(vol).processes[0].parameters == {"command": [PYTHON, "-m", "json.tool"]}


def test_an_unwritable_volume_fails_before_the_command_runs(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "a-file").write_text("not a directory")
    done = ptb_run(tmp_path, f"file://{tmp_path / 'a-file' / 'v'}", "nowhere", "--", PYTHON, "-c",
                   f"open({str(marker)!r}, 'w')")
    assert done.returncode == 1 and done.stderr.startswith(b"ptb: error:")
    assert not marker.exists()


def _controlling_terminal() -> None:
    """In the child: make stdin (a pty) this new session's controlling terminal, its group the foreground."""
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_a_ctrl_c_at_the_terminal_reaches_the_command_once(tmp_path, vol):
    code = ("import signal, sys, time\n"
            "seen = []\n"
            "signal.signal(signal.SIGINT, lambda n, f: seen.append(n))\n"
            "print('ready', flush=True)\n"
            "deadline = time.monotonic() + 60\n"
            "while not seen and time.monotonic() < deadline: time.sleep(0.01)\n"
            "time.sleep(1.0)\n"                       # time for a second SIGINT to arrive, if ptb sent one
            "sys.exit(10 + len(seen))")
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([PYTHON, "-m", "ptb", "run", vol, "at a terminal", "--", PYTHON, "-c", code],
                                cwd=tmp_path, env=env_for(tmp_path), stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_controlling_terminal)
        os.close(slave)
        wait_for_line(proc.stdout, b"ready")
        os.write(master, b"\x03")                 # Ctrl-C: the terminal signals its foreground group
        _, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 11, err              # one SIGINT, not two
    _, run, _ = only_run(vol)
    assert run.status == "interrupted"
