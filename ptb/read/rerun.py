"""The texts ``ptb reproduce`` writes: rerun.py, rerun.sh, requirements.txt, Dockerfile, README.txt.

Everything in them that comes from the volume is data (DESIGN §7): values
enter rerun.py as one JSON text inside a Python string literal, argv items
enter rerun.sh quoted by ``shlex.quote``, and text in comments or README.txt
has its control characters (newlines too) made visible, so no recorded text
can add a line of code, a shell command or a Dockerfile instruction.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import re
import shlex
import textwrap
from importlib import resources
from typing import Any, Dict, List, Optional, Sequence

from .fmt import fmt_time, one_line
from .reproduce import Plan, argv_volume, dotted

_REQUIREMENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,200}[A-Za-z0-9])?\Z")
_VERSION = re.compile(r"[A-Za-z0-9.+!_-]{1,100}\Z")
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:-]{0,250}\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
_PLACEHOLDER = "RECORD: Dict[str, Any] = {}     # filled in by ptb reproduce"


@dataclasses.dataclass
class Outcome:
    """What the writer restored, for README.txt."""

    files: List[str] = dataclasses.field(default_factory=list)        # written in DIR, in order
    source: Optional[str] = None              # where source/ was cloned from
    applied: List[str] = dataclasses.field(default_factory=list)      # files whose uncommitted changes apply
    not_applied: List[str] = dataclasses.field(default_factory=list)  # files whose changes could not be applied
    verified: Optional[bool] = None           # does `git diff HEAD` in source/ equal the recorded diff?
    source_matches: Optional[bool] = None     # is the function's recorded source in its restored file?
    problems: List[str] = dataclasses.field(default_factory=list)     # what could not be restored


def python_version(plan: Plan) -> Optional[str]:
    return plan.python.split()[0] if plan.python else None


def requirements(plan: Plan) -> str:
    """The recorded packages pinned (``name==version``), the Python version said at the top."""
    out = [f"# The packages of run {plan.run_id}, as recorded (pip install -r requirements.txt)",
           f"# Python {one_line(plan.python, 200) if plan.python else '(not recorded)'}"]
    pins = dict(plan.packages)
    command = plan.command_env or {}
    if isinstance(command.get("distribution"), str) and isinstance(command.get("version"), str):
        pins.setdefault(command["distribution"], command["version"])      # the command's own distribution
    for name, version in pins.items():
        if _REQUIREMENT.match(name) and _VERSION.match(version):
            out.append(f"{name}=={version}")
        else:
            out.append(f"# not a requirement pip takes: {one_line(name, 100)} {one_line(version, 100)}")
    return "\n".join(out) + "\n"


def dockerfile(plan: Plan, copied: Sequence[str]) -> Optional[str]:
    """``FROM image@digest`` (or ``image:tag`` when no digest was recorded), then the restored files."""
    docker = plan.docker or {}
    name, tag, image_id = docker.get("image name"), docker.get("tag"), docker.get("image ID")
    if not isinstance(name, str) or not _IMAGE.match(name):
        return None
    out = [f"# The image run {plan.run_id} ran in, as recorded by ptb ({one_line(name, 100)}"
           f"{':' + one_line(tag, 60) if isinstance(tag, str) else ''})."]
    if isinstance(image_id, str) and _DIGEST.match(image_id):
        out.append("# A digest recorded as the image ID may be the local ID rather than the registry digest;")
        out.append("# if `docker build` cannot pull it, use the tag above.")
        out.append(f"FROM {name}@{image_id}")
    else:
        out.append("# Its digest was not recorded: the tag may name another image by now.")
        out.append(f"FROM {name}:{tag if isinstance(tag, str) and _TAG.match(tag) else 'latest'}")
    out += ["WORKDIR /reproduce", "# The image holds the run's packages; if it does not:",
            "#   RUN pip install -r requirements.txt"] + [f"COPY {f}{'/' if f == 'source' else ''} /reproduce/{f}"
                                     f"{'/' if f == 'source' else ''}" for f in copied]
    return "\n".join(out) + "\n"


def rerun_py(plan: Plan, cell: Optional[str]) -> str:
    """rerun.py: ptb's template with the run's data as one JSON text."""
    call = plan.call
    record = {"run": plan.run.id, "volume": plan.volume, "description": plan.run.description,
              "kind": call.kind, "module": call.module, "qualname": call.qualname, "file": call.file,
              "import_root": call.import_root, "cell": cell, "parameters": plan.parameters,
              "supply": [[list(p), why] for p, why in plan.supply],
              "volume_at": [list(p) for p in plan.volume_at], "objects": [list(p) for p in plan.objects]}
    template = resources.files(__package__).joinpath("rerun_template.py").read_text(encoding="utf-8")
    assert _PLACEHOLDER in template
    data = json.dumps(record, sort_keys=True, ensure_ascii=True)
    return template.replace(_PLACEHOLDER, f"RECORD: Dict[str, Any] = json.loads({data!r})")


def rerun_sh(plan: Plan) -> str:
    """rerun.sh: the recorded argv, the run's volume replaced by ``--volume``, redacted items to be ``--set``."""
    argv = list(plan.call.argv)
    supply = {p[1]: why for p, why in plan.supply if len(p) == 2 and p[0] == "command" and isinstance(p[1], int)}
    at_volume = {}
    for i, item in enumerate(argv):
        prefix = argv_volume(item, plan.volume)
        if prefix is not None:
            at_volume[i] = prefix
    words = []
    for i, item in enumerate(argv):
        if i in supply:
            words.append(f'"$ARG_{i}"')
        elif i in at_volume:
            words.append((shlex.quote(at_volume[i]) if at_volume[i] else "") + '"$VOLUME"')
        else:
            words.append(shlex.quote(item))
    out = ["#!/bin/sh",
           f"# Re-run of run {plan.run_id} of {one_line(plan.volume)}, written by `ptb reproduce`: the recorded",
           "# command, run from source/ when it was restored.",
           "#   sh rerun.sh --volume NEW_CLOUDPATH [--set N=VALUE ...] [--overwrite-original]",
           "# --volume replaces the run's volume where the command names it; without it the script refuses",
           "# to run (--overwrite-original allows writing the original again). Argument N that was redacted",
           "# when recorded must be given with --set N=VALUE.",
           "set -eu", "VOLUME=", "OVERWRITE="]
    for i in sorted(supply):
        out.append(f"ARG_{i}=; SET_{i}=    # argument {i}: {one_line(supply[i], 120)}")
    sets = "".join(f"        {i}=*) ARG_{i}=${{2#{i}=}}; SET_{i}=1 ;;\n" for i in sorted(supply))
    out.append(f'''while [ $# -gt 0 ]; do
  case $1 in
    --volume) [ $# -ge 2 ] || {{ echo "rerun.sh: --volume needs a cloudpath" >&2; exit 2; }}; VOLUME=$2; shift 2 ;;
    --volume=*) VOLUME=${{1#--volume=}}; shift ;;
    --overwrite-original) OVERWRITE=1; shift ;;
    --set) [ $# -ge 2 ] || {{ echo "rerun.sh: --set needs N=VALUE" >&2; exit 2; }}
      case $2 in
{sets}        *) echo "rerun.sh: --set $2: no such redacted argument" >&2; exit 2 ;;
      esac; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "rerun.sh: unknown option $1" >&2; exit 2 ;;
  esac
done''')
    for i in sorted(supply):
        out.append(f'[ -n "$SET_{i}" ] || {{ echo "rerun.sh: refused: argument {i} was redacted when recorded; '
                   f'give it with --set {i}=VALUE" >&2; exit 2; }}')
    original = shlex.quote(plan.volume)
    refuse = 'echo "rerun.sh: refused: {}" >&2; exit 2'.format
    if at_volume:
        out += ['if [ -z "$VOLUME" ]; then',
                '  [ -n "$OVERWRITE" ] || { ' + refuse('the command writes to "' + original + '"; give --volume '
                                                       'NEW_CLOUDPATH, or --overwrite-original') + '; }',
                f"  VOLUME={original}",
                f'elif [ "${{VOLUME%/}}" = {original} ] && [ -z "$OVERWRITE" ]; then',
                "  " + refuse("--volume is the run's own volume; add --overwrite-original to write there"),
                "fi"]
    else:
        out += ['[ -z "$VOLUME" ] || { ' + refuse("the command does not name the run's volume, so --volume has "
                                                  "nothing to replace") + '; }',
                '[ -n "$OVERWRITE" ] || { ' + refuse("the command does not name the run's volume \"" + original
                                                     + "\", so it may write there again; pass "
                                                       "--overwrite-original to run it as recorded") + '; }']
    out.append('cd "$(dirname "$0")"')
    out.append("[ ! -d source ] || cd source")
    out.append("exec " + " ".join(words))
    return "\n".join(out) + "\n"


def parameters_json(plan: Plan) -> str:
    return json.dumps({"run": plan.run.id, "volume": plan.volume, "parameters": plan.parameters,
                       "supply": {dotted(p): why for p, why in plan.supply}},
                      indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _call_line(plan: Plan, files: Sequence[str]) -> Optional[str]:
    call = plan.call
    if "rerun.py" in files and call.kind == "function":
        return f"calls {one_line(call.module)}.{one_line(call.qualname)} from source/ with the run's parameters"
    if "rerun.py" in files:
        return "runs the recorded cell (cell.py) with the run's parameters as its variables"
    if "rerun.sh" in files:
        return "runs the recorded command line"
    return None


def readme(plan: Plan, outcome: Outcome, *, version: str, rerun_hint: Optional[str]) -> str:
    """README.txt: what was restored, what could not be, and how to run it again."""
    run, git = plan.run, plan.git or {}
    who = " on ".join(one_line(x, 80) for x in (run.user, run.host) if x)
    out = [f"ptb reproduce: run {plan.run_id} of {one_line(plan.volume)}",
           f"  description: {one_line(run.description)}",
           f"  status:      {run.status}, started {fmt_time(run.started)}" + (f" by {who}" if who else ""),
           f"  written:     {fmt_time(datetime.datetime.now(datetime.timezone.utc))} by ptb {version}", "",
           "Restored"]
    described = {
        "source": _source_line(plan, outcome),
        "uncommitted.diff": "the run's uncommitted diff, as recorded",
        "requirements.txt": f"{len(plan.packages)} packages pinned"
                            + (f"; Python {one_line(python_version(plan))}" if plan.python else ""),
        "Dockerfile": f"the run's image: {one_line((plan.docker or {}).get('image name'))}",
        "parameters.json": "the run's parameters: the step's, with the run's own values over them",
        "cell.py": "the recorded source of the cell (or block)",
        "rerun.py": _call_line(plan, outcome.files), "rerun.sh": _call_line(plan, outcome.files),
    }
    for name in outcome.files:
        label = f"  {name + '/' * (name == 'source'):<18} "
        out.append(textwrap.fill(described.get(name) or "", 100, initial_indent=label, subsequent_indent=" " * 21,
                                 break_on_hyphens=False, break_long_words=False))
    missing = [one_line(p, 2000) for p in outcome.problems]
    if plan.untracked:
        omitted = git.get("untracked omitted")
        more = f" and {omitted} more" if isinstance(omitted, int) and omitted else ""
        missing.append(f"untracked files (their names were recorded, never their contents): "
                       f"{', '.join(one_line(n, 120) for n in plan.untracked[:50])}{more}")
    if plan.supply:
        missing.append("values to supply (redacted or summarised when recorded): "
                       + "; ".join(f"{one_line(dotted(p), 80)}: {one_line(why, 120)}" for p, why in plan.supply))
    if plan.call.problem:
        missing.append(one_line(plan.call.problem))
    elif not plan.volume_at and {"rerun.py", "rerun.sh"} & set(outcome.files):
        missing.append(f"a new output: the recorded {'command' if plan.call.kind == 'command' else 'parameters'} do "
                       f"not name the run's volume, so the rerun script cannot point its output elsewhere (it "
                       f"refuses to run without --overwrite-original)")
    missing += [f"environment file {one_line(f)} is missing on the volume" for f in plan.missing_envs]
    if plan.run.envs_inherited:
        missing.append("the run's own environment: an older ptb recorded only its process's first one, used here")
    out += ["", "Not restored"] + ([textwrap.fill(m, 100, initial_indent="  - ", subsequent_indent="    ",
                                                  break_on_hyphens=False, break_long_words=False) for m in missing]
                                   or ["  nothing: everything recorded was restored"])
    if rerun_hint:
        out += ["", "To run it again", *[f"  {line}" for line in rerun_hint.splitlines()]]
    return "\n".join(out) + "\n"


def _source_line(plan: Plan, outcome: Outcome) -> str:
    git = plan.git or {}
    branch = git.get("branch")
    text = (f"{one_line(outcome.source)} at commit {plan.commit}"
            + (f" (branch {one_line(branch, 80)})" if isinstance(branch, str) and branch else ""))
    if outcome.applied:
        text += (f", with the run's uncommitted changes to {len(outcome.applied)} file(s) applied: "
                 f"{', '.join(one_line(f, 120) for f in outcome.applied[:20])}")
    if outcome.not_applied:
        text += f"; changes NOT applied to: {', '.join(one_line(f, 120) for f in outcome.not_applied)}"
    if outcome.verified and not plan.diff:
        text += "; no uncommitted changes, as when the run was recorded"
    elif outcome.verified:
        text += "; `git diff HEAD` there equals the recorded diff"
    elif outcome.verified is False:
        text += "; `git diff HEAD` there differs from the recorded diff"
    if outcome.source_matches is False:
        text += "; the function's recorded source is not in its restored file"
    return text


def rerun_hint(plan: Plan, files: Sequence[str], run_arg: str) -> str:
    """The commands that run it again, for README.txt and the command's output."""
    version = python_version(plan) or ""
    python = "python" + ".".join(version.split(".")[:2]) if re.match(r"\d+\.\d+", version) else "python3"
    lines = [f"{python} -m venv env && . env/bin/activate && pip install -r requirements.txt"]
    if "source" in files:
        lines.append(f"ptb reproduce {shlex.quote(plan.volume)} {shlex.quote(run_arg)} --check --source source"
                     "    # the same code?")
    sets = " ".join(f"--set {shlex.quote(dotted(p))}=VALUE" for p, _ in plan.supply)
    out = " --volume NEW_CLOUDPATH" if plan.volume_at else " --overwrite-original"
    if "rerun.py" in files:
        lines.append(f"python rerun.py{out}{' ' + sets if sets else ''}")
    elif "rerun.sh" in files:
        shsets = " ".join(f"--set {p[1]}=VALUE" for p, _ in plan.supply if len(p) == 2 and p[0] == "command")
        lines.append(f"sh rerun.sh{out}{' ' + shsets if shsets else ''}")
    return "\n".join(lines)


def summary(plan: Plan) -> Dict[str, Any]:
    """The plan as JSON, for ``--json``."""
    return {"volume": plan.volume, "run": plan.run.id, "kind": plan.call.kind, "commit": plan.commit,
            "remote": plan.remote, "diff_files": plan.diff_files(), "diff_problems": plan.diff_problems(),
            "untracked": plan.untracked, "packages": len(plan.packages), "python": python_version(plan),
            "supply": {dotted(p): why for p, why in plan.supply},
            "volume_at": [dotted(p) for p in plan.volume_at], "problem": plan.call.problem}
