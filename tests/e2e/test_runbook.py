"""The runbook shows only real commands, and its baseline script measures every metric it names.

Every command in a ```sh block of runbook/*.md and runbook/drills/*.md is extracted and checked
against the running system:
  ./petstore CMD ...          CMD is a launcher command and `./petstore CMD --help` exits 0;
  ./petstore dlq|saga VERB    `./petstore dlq|saga VERB --help` exits 0;
  dlq VERB, petstore-saga VERB  the same, on the PATH `./petstore env` prints;
  ./petstore drill NAME       `./petstore drill --help` exits 0 and NAME is in `drill list`;
  ./petstore psql DB -c SQL   run for real, in a read-only transaction (PGOPTIONS), and the SQL
                              must be one SELECT (or WITH ... SELECT);
  ./petstore rabbitmqctl VERB  `rabbitmqctl help VERB` exits 0; list_* and status run for real;
  curl URL                    run for real (GET only) with the system's environment;
  runbook/tools/*.py          `--help` exits 0;
  eval "$(./petstore env)"    `./petstore env` exits 0.
Anything else fails the test: a runbook must not show a command nobody checks. Every drill that
runbook/problems.md names must be listed by `./petstore drill list`.

A second test runs runbook/tools/baseline.py for a few seconds and checks that the file it writes
has p50, p99 and max figures for every metric of its METRICS table."""
import glob
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAUNCHER = os.path.join(ROOT, "petstore")
PY = "/usr/bin/python3"
DRILL_NAMES = ("sigkill-daemons", "rabbitmq-restart", "rabbitmq-down", "postgres-restart",
               "postgres-down", "payment-frozen", "memory-alarm", "duplicate-storm",
               "poison-and-handler-bug", "open-transaction", "broker-cut-off",
               "database-cut-off")


def runbook_files():
    return sorted(glob.glob(os.path.join(ROOT, "runbook", "*.md")) +
                  glob.glob(os.path.join(ROOT, "runbook", "drills", "*.md")))


def sh_commands():
    """[(file:line, command text)] of every command line in the ```sh blocks."""
    out = []
    for path in runbook_files():
        text = open(path).read()
        for m in re.finditer(r"^```sh\n(.*?)^```", text, re.S | re.M):
            first = text[:m.start(1)].count("\n") + 1
            pending, start = "", None
            for i, line in enumerate(m.group(1).splitlines()):
                if not pending and (not line.strip() or line.lstrip().startswith("#")):
                    continue
                if start is None:
                    start = first + i
                if line.endswith("\\"):
                    pending += line[:-1] + " "
                    continue
                out.append((f"{os.path.relpath(path, ROOT)}:{start}", pending + line))
                pending, start = "", None
    return out


def system_env():
    """The environment of the running system, as `./petstore env` prints it."""
    r = subprocess.run([LAUNCHER, "env"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ)
    for line in r.stdout.splitlines():
        m = re.match(r"^export ([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if not m:
            continue
        if m.group(1) == "PATH":
            env["PATH"] = m.group(2).split(":")[0].strip("'") + ":" + os.environ["PATH"]
        else:
            env[m.group(1)] = shlex.split(m.group(2))[0] if m.group(2) else ""
    return env


@pytest.fixture(scope="module")
def env():
    return system_env()


def run(argv, env, timeout=60):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)


def ok(r, what):
    assert r.returncode == 0, f"{what}: exit {r.returncode}\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
    return r.stdout


def words(command):
    """The first simple command of a line: its words up to a pipe, with VAR=value prefixes
    and the comment removed."""
    lex = shlex.shlex(command, posix=True, punctuation_chars="|&;")
    lex.whitespace_split = True
    lex.commenters = "#"
    argv = []
    for tok in lex:
        if tok in ("|", "||", "&&", ";", "&"):
            break
        argv.append(tok)
    while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
        argv.pop(0)
    return argv


def readonly_sql(sql):
    """One SELECT (or WITH ... SELECT) statement, nothing that writes."""
    s = sql.strip().rstrip(";").strip()
    return (";" not in s and re.match(r"(?is)^(select|with)\b", s) is not None and
            re.search(r"(?i)\b(insert|update|delete|truncate|drop|alter|create|grant|copy)\b",
                      re.sub(r"'[^']*'", "''", s)) is None)


def check_tool_verb(prog, verb, env, where):
    if verb in (None, "help", "--help", "-h") or verb.startswith("-"):
        return ok(run(prog + ["--help"], env), f"{where}: {' '.join(prog)} --help")
    return ok(run(prog + [verb, "--help"], env), f"{where}: {' '.join(prog)} {verb} --help")


def check(where, command, env, drills):
    argv = words(command)
    assert argv, f"{where}: no command in {command!r}"
    prog = argv[0]
    if prog == "eval":
        assert "./petstore env" in command, f"{where}: eval of what? {command!r}"
        ok(run([LAUNCHER, "env"], env), f"{where}: ./petstore env")
        return
    if prog == "curl":
        assert not re.search(r"\s(-X|-d|--data|--request)\b", command), \
            f"{where}: only GETs are run: {command!r}"
        ok(run(["bash", "-c", command], env, timeout=30), f"{where}: {command}")
        return
    if prog in ("python3", PY) and len(argv) > 1 and argv[1].startswith("runbook/tools/"):
        argv = argv[1:]
        prog = argv[0]
    if prog.startswith("runbook/tools/"):
        assert os.access(os.path.join(ROOT, prog), os.X_OK), f"{where}: {prog} not executable"
        ok(run([PY, os.path.join(ROOT, prog), "--help"], env), f"{where}: {prog} --help")
        return
    if prog == "dlq" or prog == "petstore-saga":
        check_tool_verb([prog], argv[1] if len(argv) > 1 else None, env, where)
        return
    assert prog == "./petstore", f"{where}: a command the runbook test does not know: {command!r}"
    assert len(argv) > 1, f"{where}: ./petstore without a command"
    cmd = argv[1]
    if cmd in ("dlq", "saga"):
        check_tool_verb([LAUNCHER, cmd], argv[2] if len(argv) > 2 else None, env, where)
        return
    ok(run([LAUNCHER, cmd, "--help"], env), f"{where}: ./petstore {cmd} --help")
    if cmd == "drill" and len(argv) > 2 and argv[2] not in ("list", "all", "--help", "-h"):
        assert argv[2] in drills, f"{where}: drill {argv[2]} is not in ./petstore drill list"
    elif cmd == "psql" and "-c" in argv:
        sql = argv[argv.index("-c") + 1]
        assert readonly_sql(sql), f"{where}: not a single SELECT: {sql}"
        ro = dict(env, PGOPTIONS="-c default_transaction_read_only=on")
        ok(run([LAUNCHER, "psql", argv[2], "-X", "-v", "ON_ERROR_STOP=1", "-c", sql], ro),
           f"{where}: {command}")
    elif cmd == "rabbitmqctl" and len(argv) > 2:
        verb = argv[2]
        ok(run([LAUNCHER, "rabbitmqctl", "help", verb], env), f"{where}: rabbitmqctl help {verb}")
        if verb.startswith("list_") or verb == "status":
            ok(run([LAUNCHER, "rabbitmqctl", *argv[2:]], env), f"{where}: {command}")


def drill_list(env):
    r = run([LAUNCHER, "drill", "list"], env)
    ok(r, "./petstore drill list")
    return {line.split()[0] for line in r.stdout.splitlines() if line.strip()}


def test_every_runbook_command_exists_and_answers_help(env):
    commands = sh_commands()
    assert len(commands) > 30, f"only {len(commands)} commands found in {runbook_files()}"
    try:
        drills = drill_list(env)
    except AssertionError:
        drills = set()  # reported by the drill test below
    failures = []
    for where, command in commands:
        try:
            check(where, command, env, drills)
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, f"{len(failures)} of {len(commands)} commands fail:\n" + \
        "\n".join(failures)


def test_every_drill_of_the_runbook_is_a_drill_of_the_launcher(env):
    text = open(os.path.join(ROOT, "runbook", "problems.md")).read()
    named = set(re.findall(r"\./petstore drill ([a-z][a-z-]+)", text)) - {"list", "all"}
    assert named >= set(DRILL_NAMES), f"problems.md does not rehearse {set(DRILL_NAMES) - named}"
    drills = drill_list(env)
    missing = sorted(named - drills)
    assert not missing, f"./petstore drill list lacks {missing} (it lists {sorted(drills)})"


def test_baseline_writes_a_figure_for_every_metric(env, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "baseline", os.path.join(ROOT, "runbook", "tools", "baseline.py"))
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    out = tmp_path / "baseline.md"
    r = run([PY, os.path.join(ROOT, "runbook", "tools", "baseline.py"), "--seconds", "5",
             "--rate", "5", "--drain", "30", "-o", str(out)], env, timeout=180)
    ok(r, "baseline.py --seconds 5 --rate 5")
    rows = {}
    for line in out.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7:
            rows[cells[0]] = cells
    number = re.compile(r"^-?\d+(\.\d+)?$")
    for key, _, _ in baseline.METRICS:
        assert key in rows, f"no row for {key!r} in\n{out.read_text()}"
        p50, p99, mx = rows[key][2:5]
        assert all(number.match(v) for v in (p50, p99, mx)), f"{key}: {rows[key]}"
        assert float(p50) <= float(p99) <= float(mx), f"{key}: {rows[key]}"
    assert float(rows["daemons ready"][2]) == 9, rows["daemons ready"]
    assert float(rows["orders accepted /s"][4]) > 0, rows["orders accepted /s"]
