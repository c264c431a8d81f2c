"""The container deployment files agree with the launcher and the C sources.

Dockerfile, compose.yaml and runbook/k8s are read as files: no Docker engine, no cluster, no
server. What they must agree with is read from the sources too, so that a process, a variable or
a route added there is checked here without editing this test:
  - the launcher (`petstore`): PROCESS_TABLE (the daemons: kind, binary, port, database, broker
    user), TOOL_TABLE (the tools) and CONFIG_TABLE (every variable and who reads it);
  - the C configuration tables (`{.name = "VAR", ... .required = 1, .secret = 1}`) of each
    binary's sources (the directory whose CMakeLists.txt has add_executable(BINARY ...)), plus
    the standard ones of services/common/svc/svc.c for a daemon built on svc_main; a daemon that
    consumes no work queue (no `.queue = "...`) needs no AMQP_MGMT_URL (svc.c, all_vars());
  - the HTTP server's built-in routes (services/common/http.c): /livez and /readyz.

A variable is required for a process if its C table says `.required = 1`, or if it is one of
ALSO_NEEDED below, set by the launcher and read by the process's own sources (ADMIN_TOKEN for
the doors' admin APIs, RELAY_NAME for the relays). A process may be given only the variables
CONFIG_TABLE says it reads. Every failure names the file, the service or container, and the
variable.
"""
import functools
import glob
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = os.environ.get("PETSTORE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
COMPOSE = "compose.yaml"
K8S = os.path.join("runbook", "k8s")
YAMLLINT_CONFIG = "{extends: default, rules: {line-length: {max: 120}}}"

# Peak RSS in MB measured by `./petstore bench` on a 2-core machine (storefront: under a
# 500 orders/s overload; relays: the highest of the four). Memory limits must be at least twice
# these (read as MiB, the stricter reading).
PEAK_RSS_MB = {"storefront": 46.6, "inventory": 12.0, "payment": 12.0, "order-saga": 11.7,
               "audit": 11.9}
RELAY_PEAK_RSS_MB = 12.5


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------- the launcher's tables

def launcher_table(name):
    m = re.search(r"^%s='\n(.*?)^'" % name, read("petstore"), re.S | re.M)
    assert m, f"petstore: no {name}='...' block"
    return [line.split() for line in m.group(1).splitlines() if line.strip()]


PROCS = {r[0]: dict(name=r[0], kind=r[1], bin=r[2], port=int(r[3]), db=r[4], user=r[5])
         for r in launcher_table("PROCESS_TABLE")}
TOOLS = {r[0]: dict(name=r[0], kind="tool", bin=r[1], db=r[2], user=r[3])
         for r in launcher_table("TOOL_TABLE")}
CONFIG = {r[0]: dict(readers=r[1].split(","), setter=r[2]) for r in launcher_table("CONFIG_TABLE")}
SERVICES = [p for p in PROCS if PROCS[p]["kind"] == "service"]
RELAYS = [p for p in PROCS if PROCS[p]["kind"] == "relay"]
SERVICE_DBS = {PROCS[s]["db"] for s in SERVICES}


def exe(p):
    return os.path.basename((PROCS.get(p) or TOOLS[p])["bin"])


def service_of(relay):
    """The service whose database the relay publishes (PROCESS_TABLE's database column)."""
    owners = [s for s in SERVICES if PROCS[s]["db"] == PROCS[relay]["db"]]
    assert len(owners) == 1, f"PROCESS_TABLE: relay {relay} has {len(owners)} services on its database"
    return owners[0]


def relay_of(service):
    relays = [r for r in RELAYS if PROCS[r]["db"] == PROCS[service]["db"]]
    return relays[0] if relays else None


def reads(p, var):
    kind = (PROCS.get(p) or TOOLS[p])["kind"]
    for r in CONFIG[var]["readers"]:
        if r == p or (r == "daemons" and kind != "tool") or (r == "relays" and kind == "relay"):
            return True
    return False


# ---------------------------------------------------------------- the C sources

@functools.lru_cache(maxsize=None)
def cmake_lists():
    """{directory: text} of every CMakeLists.txt of the build (not tests/, not dot directories)."""
    out = {}
    for d, dirs, files in os.walk(ROOT):
        rel = os.path.relpath(d, ROOT)
        dirs[:] = [x for x in dirs if not x.startswith((".", "build")) and x != "node_modules"
                   and not (rel == "." and x == "tests")]
        if "CMakeLists.txt" in files:
            out["" if rel == "." else rel] = read(os.path.join(rel, "CMakeLists.txt"))
    return out


@functools.lru_cache(maxsize=None)
def source_dir(binary):
    pattern = re.compile(r"add_executable\(\s*%s\s" % re.escape(binary))
    dirs = [d for d, text in sorted(cmake_lists().items()) if pattern.search(text)]
    assert len(dirs) == 1, f"{len(dirs)} CMakeLists.txt have add_executable({binary} ...): {dirs}"
    return dirs[0]


@functools.lru_cache(maxsize=None)
def sources(p):
    d = source_dir(exe(p))
    return {os.path.join(d, os.path.basename(f)): read(os.path.join(d, os.path.basename(f)))
            for f in sorted(glob.glob(os.path.join(ROOT, d, "*.c")))}


def cfg_entries(text):
    """(name, entry text) of every `{.name = "VAR", ...}` of a cfg_var_t table."""
    starts = list(re.finditer(r'\{\s*\.name\s*=\s*"([A-Z][A-Z0-9_]*)"', text))
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        close = text.find("};", m.start())
        if close != -1:
            end = min(end, close)
        yield m.group(1), text[m.start():end]


SVC_C = "services/common/svc/svc.c"


@functools.lru_cache(maxsize=None)
def c_vars(p):
    """{var: (required, secret, where)} of the C tables process p loads."""
    out = {}
    srcs = sources(p)
    tables = dict(srcs)
    if any("svc_main(" in t for t in srcs.values()):
        tables = {SVC_C: read(SVC_C), **srcs}
    work_queue = any(re.search(r'\.queue\s*=\s*"', t) for t in srcs.values())
    for where, text in tables.items():
        for name, entry in cfg_entries(text):
            required = bool(re.search(r"\.required\s*=\s*1", entry))
            if where == SVC_C and name == "AMQP_MGMT_URL" and not work_queue:
                required = False
            secret = bool(re.search(r"\.secret\s*=\s*1", entry))
            old = out.get(name, (False, False, where))
            out[name] = (old[0] or required, old[1] or secret, where if required else old[2])
    return out


# Optional for the C tables, but a deployment without them is not the system the launcher runs:
# given to every process whose own sources read them (CONFIG_TABLE setter `launcher`).
ALSO_NEEDED = {"ADMIN_TOKEN": "without it the admin API is disabled",
               "RELAY_NAME": "it names the relay in the logs and the broker's connection list"}


def required_vars(p):
    """{var: why} every process p needs."""
    need = {v: w for v, (req, _, w) in c_vars(p).items() if req}
    own = "\n".join(sources(p).values())
    for v, why in ALSO_NEEDED.items():
        c = CONFIG.get(v)
        if c and c["setter"] == "launcher" and reads(p, v) and f'"{v}"' in own and v not in need:
            need[v] = f"{source_dir(exe(p))}: {why}"
    return need


SECRET_VARS = set()
for _p in list(PROCS) + list(TOOLS):
    SECRET_VARS |= {v for v, (_, s, _) in c_vars(_p).items() if s}


def test_the_sources_are_what_this_test_reads():
    assert PROCS and SERVICES and RELAYS and TOOLS and CONFIG
    m = re.search(r"\*all_vars\(const svc_def_t.*?\n\}\n", read(SVC_C), re.S)
    assert m and re.search(r"!svc__consumes_work_queue\(def\)", m.group(0)) and \
        "AMQP_MGMT_URL" in m.group(0), \
        f"{SVC_C}: all_vars() no longer makes AMQP_MGMT_URL optional for a daemon without a work " \
        "queue: update c_vars() in this test"
    for p in PROCS:
        assert {"DATABASE_URL", "AMQP_URL", "HTTP_PORT"} <= set(required_vars(p)), p
    assert "AMQP_MGMT_URL" not in required_vars(RELAYS[0])
    assert "AMQP_MGMT_URL" in required_vars(SERVICES[0])
    assert {"DATABASE_URL", "AMQP_URL"} <= SECRET_VARS


def test_the_health_endpoints_exist_in_the_http_server():
    text = "".join(read(f) for f in ("services/common/http.c", "services/common/health.c")
                   if os.path.exists(os.path.join(ROOT, f)))
    for path in ("/livez", "/readyz"):
        assert re.search(r'\{\s*"GET",\s*"%s"' % re.escape(path), text), \
            f"services/common/http.c: no GET {path} route: the probes would hit nothing"


# ---------------------------------------------------------------- variables, either file

def check_env(where, p, env, problems):
    """env: {var: raw value or k8s env entry}. Required present, nothing unknown, ports."""
    for v, why in sorted(required_vars(p).items()):
        if v not in env:
            problems.append(f"{where}: missing {v} (required by {why})")
    for v in sorted(env):
        if v not in CONFIG:
            problems.append(f"{where}: {v} is not a variable of CONFIG_TABLE (a typo?)")
        elif not reads(p, v):
            problems.append(f"{where}: {v} is not read by {p} (CONFIG_TABLE: {','.join(CONFIG[v]['readers'])})")


def doors():
    """Daemons serving their own HTTP routes (the APIs), as opposed to health and metrics only."""
    return {p for p in SERVICES if any(re.search(r"\.http_routes\s*=", t) for t in sources(p).values())}


# ---------------------------------------------------------------- Dockerfile

def dockerfile():
    text = read("Dockerfile")
    return re.sub(r"\\\n", " ", text)  # join continued lines


def test_dockerfile_is_multi_stage_debian_12():
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile(), re.M | re.I)
    assert len(froms) >= 2, f"Dockerfile: {len(froms)} stage(s), want a build and a runtime stage"
    bad = [f for f in froms if not f.startswith("debian:12")]
    assert not bad, f"Dockerfile: stages not FROM debian:12*: {bad}"
    assert froms[-1].startswith("debian:12-slim"), f"Dockerfile: runtime stage is {froms[-1]}, not debian:12-slim"


def test_dockerfile_builds_without_tests_and_runs_as_non_root():
    text = dockerfile()
    if re.search(r"option\(PETSTORE_TESTS\b", read("CMakeLists.txt")):
        assert "-DPETSTORE_TESTS=OFF" in text, "Dockerfile: build with -DPETSTORE_TESTS=OFF"
    assert "-DCMAKE_BUILD_TYPE=Release" in text, "Dockerfile: build with -DCMAKE_BUILD_TYPE=Release"
    runtime = re.split(r"^FROM\s", text, flags=re.M | re.I)[-1]
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), \
        f"Dockerfile: the runtime stage must end as a non-root USER (found {users})"


def test_dockerfile_copies_what_the_build_reads():
    """Every directory the top-level CMakeLists.txt adds, but those of the test and fuzz builds,
    which the image turns off."""
    text = read("CMakeLists.txt")
    outside, depth = [], 0
    for line in text.splitlines():
        if re.match(r"\s*if\((PETSTORE_TESTS|PETSTORE_FUZZ)\)", line):
            depth += 1
        elif depth and re.match(r"\s*if\(", line):
            depth += 1
        elif depth and re.match(r"\s*endif\(", line):
            depth -= 1
        elif not depth:
            outside.append(re.sub(r'"[^"]*"', "", re.sub(r"#.*", "", line)))
    wanted = {t for t in re.findall(r"[A-Za-z][\w-]*(?:/[\w-]+)*", "\n".join(outside))
              if os.path.isdir(os.path.join(ROOT, t))}
    build_stage = re.split(r"^FROM\s", dockerfile(), flags=re.M | re.I)[1]
    copied = set()
    for line in re.findall(r"^COPY\s+(?!--from)(.*)$", build_stage, re.M | re.I):
        copied |= {os.path.normpath(a) for a in line.split()[:-1] if not a.startswith("--")}
    missing = sorted(d for d in wanted if not any(c == "." or d == c or d.startswith(c + "/") for c in copied))
    assert not missing, f"Dockerfile: the build stage does not COPY {missing} (CMakeLists.txt adds them)"
    assert "CMakeLists.txt" in copied or "." in copied, "Dockerfile: the build stage does not COPY CMakeLists.txt"


def test_dockerfile_copies_every_binary_of_the_launcher():
    copied = set()
    for line in re.findall(r"^COPY\s+--from=\S+\s+(.*)$", dockerfile(), re.M | re.I):
        copied |= {os.path.basename(s) for s in line.split()[:-1]}
    missing = sorted({exe(p) for p in list(PROCS) + list(TOOLS)} - copied)
    assert not missing, f"Dockerfile: the runtime stage does not copy {missing} (PROCESS_TABLE/TOOL_TABLE)"


# ---------------------------------------------------------------- compose.yaml

def compose():
    with open(os.path.join(ROOT, COMPOSE), encoding="utf-8") as f:
        return yaml.safe_load(f)["services"]


def compose_env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def compose_argv(svc):
    ep, cmd = svc.get("entrypoint"), svc.get("command")
    ep = ep.split() if isinstance(ep, str) else list(ep or [])
    cmd = cmd.split() if isinstance(cmd, str) else list(cmd or [])
    return ep + cmd


def check_compose_secrets(where, env, problems):
    """A secret (.secret = 1) comes from the operator's environment, and must be there:
    every interpolation in its value is ${NAME:?message}, nothing is inline."""
    for v in sorted(set(env) & SECRET_VARS):
        refs = re.findall(r"\$\{([^}]*)\}", env[v])
        if not refs or not all(re.fullmatch(r"[A-Z_][A-Z0-9_]*:\?.+", r) for r in refs):
            problems.append(f"{where}: {v} is a secret: interpolate it from the environment as "
                            f"${{NAME:?set NAME}}, never inline or with a default")


def required_compose_vars():
    return sorted(set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", read(COMPOSE))))


def test_compose_config_is_valid(tmp_path):
    exe_path = shutil.which("docker-compose")
    if exe_path is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    env = dict(base, **{v: "dummy" + v.lower() for v in required_compose_vars()})
    # An empty --env-file: an operator's .env in the checkout must not change the outcome.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    r = subprocess.run([exe_path, "-f", os.path.join(ROOT, COMPOSE), "--env-file", str(empty),
                        "config", "-q"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{COMPOSE}: docker-compose config -q failed:\n{r.stderr}"
    # The secrets are mandatory: without them the file does not even load.
    r = subprocess.run([exe_path, "-f", os.path.join(ROOT, COMPOSE), "--env-file", str(empty),
                        "config", "-q"], env=base, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, f"{COMPOSE}: loads with no secret set; use ${{VAR:?set VAR}}"
    assert any(f"set {v}" in r.stderr for v in required_compose_vars()), \
        f"{COMPOSE}: a missing variable must be named: ${{VAR:?set VAR}} ({r.stderr.strip()[-200:]})"


def test_yaml_files_pass_yamllint():
    exe_path = shutil.which("yamllint")
    if exe_path is None:
        pytest.skip("yamllint is not installed (Debian: apt-get install yamllint)")
    r = subprocess.run([exe_path, "-s", "-f", "parsable", "-d", YAMLLINT_CONFIG, COMPOSE, K8S],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"yamllint:\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("p", list(PROCS))
def test_compose_runs_every_process(p):
    services = compose()
    where = f"{COMPOSE}: service {p}"
    assert p in services, f"{COMPOSE}: no service {p} (PROCESS_TABLE)"
    svc = services[p]
    problems = []
    argv = compose_argv(svc)
    if not argv or os.path.basename(argv[0]) != exe(p):
        problems.append(f"{where}: runs {argv}, not {exe(p)} (PROCESS_TABLE)")
    build = svc.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    dockerfile_name = "Dockerfile" if isinstance(build, str) else (build or {}).get("dockerfile", "Dockerfile")
    if context is None or os.path.normpath(os.path.join(ROOT, context)) != os.path.normpath(ROOT) \
            or dockerfile_name != "Dockerfile":
        problems.append(f"{where}: image not built from the repository's Dockerfile (build: {build})")
    env = compose_env(svc)
    check_env(where, p, env, problems)
    check_compose_secrets(where, env, problems)
    if env.get("HTTP_PORT") != str(PROCS[p]["port"]):
        problems.append(f"{where}: HTTP_PORT={env.get('HTTP_PORT')}, PROCESS_TABLE says {PROCS[p]['port']}")
    m = re.search(r"dbname=([A-Za-z0-9_]+)", env.get("DATABASE_URL", ""))
    if not m or m.group(1) != PROCS[p]["db"]:
        problems.append(f"{where}: DATABASE_URL is not database {PROCS[p]['db']} (PROCESS_TABLE)")
    m = re.match(r"amqps?://([^:@/]+)[:@]", env.get("AMQP_URL", ""))
    if not m or m.group(1) != PROCS[p]["user"]:
        problems.append(f"{where}: AMQP_URL is not broker user {PROCS[p]['user']} (PROCESS_TABLE)")
    if PROCS[p]["kind"] == "relay":
        owner = service_of(p)
        if svc.get("network_mode") != f"service:{owner}":
            problems.append(f"{where}: network_mode is {svc.get('network_mode')!r}, "
                            f"want 'service:{owner}' (a sidecar of its service)")
        if env.get("HTTP_PORT") == compose_env(services.get(owner, {})).get("HTTP_PORT"):
            problems.append(f"{where}: HTTP_PORT equals {owner}'s, with which it shares the network")
        if svc.get("ports"):
            problems.append(f"{where}: a relay publishes no port")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("p", list(PROCS))
def test_compose_healthcheck_is_readyz_on_its_own_port(p):
    svc = compose().get(p, {})
    test = (svc.get("healthcheck") or {}).get("test")
    text = " ".join(test) if isinstance(test, list) else str(test or "")
    port = compose_env(svc).get("HTTP_PORT")
    m = re.search(r"https?://(?:127\.0\.0\.1|localhost):(\d+)(/\S*)", text)
    assert m, f"{COMPOSE}: service {p}: healthcheck {text!r} queries no http://127.0.0.1:PORT/..."
    assert m.group(2) == "/readyz" and m.group(1) == port, \
        f"{COMPOSE}: service {p}: healthcheck asks {m.group(0)}, want /readyz on its HTTP_PORT {port}"
    assert "curl" in text and "-f" in text, f"{COMPOSE}: service {p}: healthcheck must fail on HTTP errors (curl -f)"


def test_compose_migrates_every_database_in_the_launchers_order():
    services = compose()
    problems = []
    for p in SERVICES + RELAYS + [t for t in TOOLS if TOOLS[t]["db"] not in SERVICE_DBS]:
        name = f"migrate-{p}"
        svc = services.get(name)
        if svc is None:
            problems.append(f"{COMPOSE}: no service {name} ({exe(p)} --migrate)")
            continue
        if compose_argv(svc)[:1] != [exe(p)] or "--migrate" not in compose_argv(svc):
            problems.append(f"{COMPOSE}: service {name} runs {compose_argv(svc)}, not {exe(p)} --migrate")
        if str(svc.get("restart", "no")) not in ("no", "False", "on-failure"):
            problems.append(f"{COMPOSE}: service {name} is a one-shot step: restart must be \"no\"")
        check_env(f"{COMPOSE}: service {name}", p, compose_env(svc), problems)
    for p in SERVICES + RELAYS + list(TOOLS):
        if p in TOOLS and TOOLS[p]["db"] in SERVICE_DBS:
            continue
        after = []
        if p in SERVICES and relay_of(p):
            after.append((f"migrate-{p}", f"migrate-{relay_of(p)}"))  # runtime tables first
        if p in services:
            after.append((p, f"migrate-{p}"))
        for who, dep in after:
            cond = ((services.get(who) or {}).get("depends_on") or {})
            cond = cond.get(dep, {}).get("condition") if isinstance(cond, dict) else None
            if cond != "service_completed_successfully":
                problems.append(f"{COMPOSE}: service {who} must depend on {dep} with "
                                f"condition service_completed_successfully (has {cond})")
    assert not problems, "\n".join(problems)


def test_compose_tools_get_their_settings():
    services = compose()
    problems = []
    for t in TOOLS:
        svc = services.get(t)
        if svc is None:
            problems.append(f"{COMPOSE}: no service {t} for the tool {exe(t)} (TOOL_TABLE)")
            continue
        if exe(t) not in [os.path.basename(a) for a in compose_argv(svc)]:
            problems.append(f"{COMPOSE}: service {t} does not run {exe(t)}")
        env = compose_env(svc)
        check_env(f"{COMPOSE}: service {t}", t, env, problems)
        check_compose_secrets(f"{COMPOSE}: service {t}", env, problems)
    assert not problems, "\n".join(problems)


def test_compose_depends_on_always_has_a_condition():
    services = compose()
    problems = []
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            problems.append(f"{COMPOSE}: service {name}: depends_on as a list has no condition")
            continue
        for dep, spec in deps.items():
            cond = (spec or {}).get("condition")
            if dep not in services:
                problems.append(f"{COMPOSE}: service {name} depends on unknown service {dep}")
            elif cond == "service_healthy" and not services[dep].get("healthcheck"):
                problems.append(f"{COMPOSE}: service {name} waits for {dep} healthy, which has no healthcheck")
            elif cond not in ("service_started", "service_healthy", "service_completed_successfully"):
                problems.append(f"{COMPOSE}: service {name}: depends_on {dep} without a condition")
    assert not problems, "\n".join(problems)


def published(svc):
    out = []
    for spec in svc.get("ports") or []:
        if isinstance(spec, dict):
            out.append(str(spec.get("target")))
        else:
            out.append(re.sub(r"/\w+$", "", str(spec)).rsplit(":", 1)[-1])
    return out


def test_compose_publishes_only_the_doors_and_the_management_ui():
    services = compose()
    problems = []
    for name, svc in services.items():
        ports = published(svc)
        env = compose_env(svc)
        if name in doors():
            if ports != [env.get("HTTP_PORT")]:
                problems.append(f"{COMPOSE}: service {name} (a door) publishes {ports}, want its HTTP_PORT only")
            if env.get("HTTP_ADDR") != "0.0.0.0":
                problems.append(f"{COMPOSE}: service {name}: HTTP_ADDR must be 0.0.0.0 to be reached from outside")
        elif name == "rabbitmq":
            if ports != ["15672"]:
                problems.append(f"{COMPOSE}: rabbitmq publishes {ports}, want the management UI (15672) only")
        elif ports:
            problems.append(f"{COMPOSE}: service {name} publishes {ports}: only the doors "
                            f"({', '.join(sorted(doors()))}) and the management UI are public")
    assert not problems, "\n".join(problems)


def test_compose_servers_provision_every_database_and_broker_user():
    services = compose()
    problems = []
    dbs = {PROCS[p]["db"] for p in PROCS} | {TOOLS[t]["db"] for t in TOOLS}
    pg = services.get("postgres") or {}
    env = compose_env(pg)
    if not str(pg.get("image", "")).startswith("postgres:15"):
        problems.append(f"{COMPOSE}: postgres: image {pg.get('image')}, want postgres:15")
    if set(env.get("PETSTORE_DATABASES", "").split()) != dbs:
        problems.append(f"{COMPOSE}: postgres: PETSTORE_DATABASES={env.get('PETSTORE_DATABASES')!r}, "
                        f"want the launcher's databases {sorted(dbs)}")
    for db in sorted(dbs):
        if f"PG_{db.upper()}_PASSWORD" not in env:
            problems.append(f"{COMPOSE}: postgres: missing PG_{db.upper()}_PASSWORD (database {db})")
    if not any("/docker-entrypoint-initdb.d/" in str(v) for v in pg.get("volumes") or []):
        problems.append(f"{COMPOSE}: postgres: no init script in /docker-entrypoint-initdb.d")
    mq = services.get("rabbitmq") or {}
    env = compose_env(mq)
    if not str(mq.get("image", "")).startswith("rabbitmq:3.10"):
        problems.append(f"{COMPOSE}: rabbitmq: image {mq.get('image')}, want rabbitmq:3.10-management")
    users = [u["name"] for u in json.loads(read("broker-config/definitions.json"))["users"]]
    for u in users:
        if f"AMQP_{u.upper()}_PASSWORD" not in env:
            problems.append(f"{COMPOSE}: rabbitmq: missing AMQP_{u.upper()}_PASSWORD (broker user {u})")
    mounts = " ".join(str(v) for v in mq.get("volumes") or [])
    for f in ("broker-config/rabbitmq.conf", "broker-config/enabled_plugins", "broker-config/definitions.json"):
        if f not in mounts:
            problems.append(f"{COMPOSE}: rabbitmq: {f} is not mounted")
    plugins = read("broker-config/enabled_plugins")
    for plugin in ("rabbitmq_management", "rabbitmq_prometheus"):
        if plugin not in plugins:
            problems.append(f"broker-config/enabled_plugins: {plugin} is not enabled")
    for script in re.findall(r"\./(runbook/containers/[\w.-]+)", read(COMPOSE)):
        if not os.path.exists(os.path.join(ROOT, script)):
            problems.append(f"{COMPOSE}: mounts {script}, which does not exist")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- runbook/k8s

def k8s_docs():
    docs = []
    for path in sorted(glob.glob(os.path.join(ROOT, K8S, "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            for d in yaml.safe_load_all(f):
                if d:
                    docs.append((os.path.relpath(path, ROOT), d))
    return docs


def k8s_objects(kind):
    return [(f, d) for f, d in k8s_docs() if d.get("kind") == kind]


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def workloads():
    """(file, object, container, is_init) of every Deployment and Job container."""
    for kind in ("Deployment", "Job"):
        for f, d in k8s_objects(kind):
            spec = pod_spec(d)
            for c in spec.get("initContainers") or []:
                yield f, d, c, True
            for c in spec.get("containers") or []:
                yield f, d, c, False


def container_argv(c):
    return list(c.get("command") or []) + list(c.get("args") or [])


def container_env(c):
    return {e["name"]: e for e in c.get("env") or []}


def process_of(c):
    """The process (PROCESS_TABLE or TOOL_TABLE name) a container runs, by its binary and name."""
    argv = container_argv(c)
    binary = os.path.basename(argv[0]) if argv else None
    env = container_env(c)
    if binary == "outbox-relay":
        name = (env.get("RELAY_NAME") or {}).get("value")
        return name if name in PROCS else c["name"] if c["name"] in PROCS else None
    for p in list(PROCS) + list(TOOLS):
        if exe(p) == binary:
            return p
    return None


def mib(q):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?", str(q))
    assert m, f"memory quantity {q!r}"
    scale = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20,
             "G": 1e9 / 2**20, None: 1 / 2**20}[m.group(2)]
    return float(m.group(1)) * scale


def millicores(q):
    q = str(q)
    return float(q[:-1]) if q.endswith("m") else float(q) * 1000


def test_k8s_runs_every_process_in_its_services_pod():
    deployments = {d["metadata"]["name"]: (f, d) for f, d in k8s_objects("Deployment")}
    problems = []
    for p in PROCS:
        owner = p if p in SERVICES else service_of(p)
        if owner not in deployments:
            problems.append(f"{K8S}: no Deployment {owner} (for {p})")
            continue
        f, d = deployments[owner]
        names = [c["name"] for c in pod_spec(d)["containers"]]
        if p not in names:
            problems.append(f"{f}: Deployment {owner} has no container {p} ({names})")
            continue
        c = pod_spec(d)["containers"][names.index(p)]
        argv = container_argv(c)
        if not argv or os.path.basename(argv[0]) != exe(p):
            problems.append(f"{f}: container {p} runs {argv}, not {exe(p)}")
        if not re.match(r"(.*/)?petstore(:[\w.-]+)?$", str(c.get("image", ""))):
            problems.append(f"{f}: container {p}: image {c.get('image')} is not the Dockerfile's petstore image")
    assert not problems, "\n".join(problems)


def test_k8s_migrates_every_database_in_the_launchers_order():
    problems = []
    deployments = {d["metadata"]["name"]: (f, d) for f, d in k8s_objects("Deployment")}
    for s in SERVICES:
        if s not in deployments:
            continue  # reported by test_k8s_runs_every_process_in_its_services_pod
        f, d = deployments[s]
        inits = [container_argv(c) for c in pod_spec(d).get("initContainers") or []]
        want = ([[exe(relay_of(s)), "--migrate"]] if relay_of(s) else []) + [[exe(s), "--migrate"]]
        got = [a for a in inits if "--migrate" in a]
        got = [[os.path.basename(a[0])] + a[1:] for a in got]
        if got != want:
            problems.append(f"{f}: Deployment {s}: init containers run {got}, want {want} in that order")
    jobs = [container_argv(c) for _, d in k8s_objects("Job") for c in pod_spec(d)["containers"]]
    for t in TOOLS:
        if TOOLS[t]["db"] not in SERVICE_DBS and not any(
                a and os.path.basename(a[0]) == exe(t) and "--migrate" in a for a in jobs):
            problems.append(f"{K8S}: no Job runs {exe(t)} --migrate (database {TOOLS[t]['db']})")
    assert not problems, "\n".join(problems)


def defined_keys(kind):
    keys = {}
    for _, d in k8s_objects(kind):
        data = dict(d.get("data") or {}, **(d.get("stringData") or {}))
        keys[d["metadata"]["name"]] = set(data)
    return keys


def test_k8s_containers_get_their_variables_and_secrets_by_reference():
    secrets, configmaps = defined_keys("Secret"), defined_keys("ConfigMap")
    problems = []
    for f, d, c, is_init in workloads():
        p = process_of(c)
        where = f"{f}: {d['kind']} {d['metadata']['name']}, container {c['name']}"
        if p is None:
            problems.append(f"{where}: runs {container_argv(c)}, no process of PROCESS_TABLE/TOOL_TABLE")
            continue
        if c.get("envFrom"):
            problems.append(f"{where}: envFrom hides which variables it gets; list them in env")
        env = container_env(c)
        check_env(where, p, env, problems)
        for v, e in sorted(env.items()):
            ref = (e.get("valueFrom") or {})
            if v in SECRET_VARS and ("value" in e or "secretKeyRef" not in ref):
                problems.append(f"{where}: {v} is a secret (.secret = 1): valueFrom.secretKeyRef, never value")
            if "secretKeyRef" in ref:
                s = ref["secretKeyRef"]
                if s.get("key") not in secrets.get(s.get("name"), set()):
                    problems.append(f"{where}: {v} refers to Secret {s.get('name')} key {s.get('key')}, "
                                    f"which {K8S}/secrets.example.yaml does not define")
            if "configMapKeyRef" in ref:
                s = ref["configMapKeyRef"]
                if s.get("key") not in configmaps.get(s.get("name"), set()):
                    problems.append(f"{where}: {v} refers to ConfigMap {s.get('name')} key {s.get('key')}, "
                                    f"which no manifest defines")
        if p in PROCS:
            port = (env.get("HTTP_PORT") or {}).get("value")
            if port != str(PROCS[p]["port"]):
                problems.append(f"{where}: HTTP_PORT={port}, PROCESS_TABLE says {PROCS[p]['port']}")
            if not is_init and (env.get("HTTP_ADDR") or {}).get("value") != "0.0.0.0":
                problems.append(f"{where}: HTTP_ADDR must be 0.0.0.0 (the kubelet probes the pod's IP)")
            if PROCS[p]["kind"] == "relay":
                mine = {v: env.get(v, {}).get("valueFrom") for v in ("DATABASE_URL", "AMQP_URL")}
                for _, _, other, _ in workloads():
                    if process_of(other) == service_of(p):
                        theirs = {v: container_env(other).get(v, {}).get("valueFrom")
                                  for v in ("DATABASE_URL", "AMQP_URL")}
                        if theirs != mine:
                            problems.append(f"{where}: a relay uses its service's ({service_of(p)}) "
                                            f"DATABASE_URL and AMQP_URL; they differ")
                        break
    assert not problems, "\n".join(problems)


def test_k8s_pods_give_each_container_its_own_port():
    problems = []
    for f, d in k8s_objects("Deployment"):
        ports = [container_env(c).get("HTTP_PORT", {}).get("value") for c in pod_spec(d)["containers"]]
        if len(ports) != len(set(ports)):
            problems.append(f"{f}: Deployment {d['metadata']['name']}: containers share a network "
                            f"namespace and an HTTP_PORT ({ports})")
    assert not problems, "\n".join(problems)


def probe_port(c, probe):
    port = probe.get("httpGet", {}).get("port")
    for cp in c.get("ports") or []:
        if cp.get("name") == port:
            return str(cp["containerPort"])
    return str(port)


def test_k8s_probes_hit_livez_and_readyz_on_each_containers_port():
    problems = []
    for f, d in k8s_objects("Deployment"):
        for c in pod_spec(d)["containers"]:
            where = f"{f}: Deployment {d['metadata']['name']}, container {c['name']}"
            port = container_env(c).get("HTTP_PORT", {}).get("value")
            for probe, paths in (("livenessProbe", {"/livez"}), ("readinessProbe", {"/readyz"}),
                                 ("startupProbe", {"/livez", "/readyz"})):
                spec = c.get(probe)
                if spec is None:
                    if probe != "startupProbe":
                        problems.append(f"{where}: no {probe}")
                    continue
                path = spec.get("httpGet", {}).get("path")
                if path not in paths:
                    problems.append(f"{where}: {probe} asks {path}, want {' or '.join(sorted(paths))}")
                if probe_port(c, spec) != port:
                    problems.append(f"{where}: {probe} on port {probe_port(c, spec)}, its HTTP_PORT is {port}")
    assert not problems, "\n".join(problems)


def test_k8s_resources_follow_the_measured_figures():
    problems = []
    for f, d, c, _ in workloads():
        where = f"{f}: {d['kind']} {d['metadata']['name']}, container {c['name']}"
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    problems.append(f"{where}: no resources.{part}.{r}")
        if problems and problems[-1].startswith(where):
            continue
        if mib(res["requests"]["memory"]) > mib(res["limits"]["memory"]) or \
                millicores(res["requests"]["cpu"]) > millicores(res["limits"]["cpu"]):
            problems.append(f"{where}: requests above limits")
        p = process_of(c)
        if p in PROCS:
            peak = RELAY_PEAK_RSS_MB if PROCS[p]["kind"] == "relay" else PEAK_RSS_MB.get(p)
            if peak is None:
                problems.append(f"{where}: no measured peak RSS for {p}: add it to PEAK_RSS_MB")
            elif mib(res["limits"]["memory"]) < 2 * peak:
                problems.append(f"{where}: memory limit {res['limits']['memory']} is under twice "
                                f"the measured peak of {p} ({peak} MB)")
    assert not problems, "\n".join(problems)


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_k8s_every_deployment_has_a_disruption_budget():
    pdbs = k8s_objects("PodDisruptionBudget")
    problems = []
    for f, d in k8s_objects("Deployment"):
        labels = d["spec"]["template"]["metadata"].get("labels") or {}
        ns = d["metadata"].get("namespace")
        if not any(p["metadata"].get("namespace") == ns and
                   selects(p["spec"].get("selector", {}).get("matchLabels"), labels) for _, p in pdbs):
            problems.append(f"{f}: Deployment {d['metadata']['name']} has no PodDisruptionBudget selecting it")
    assert not problems, "\n".join(problems)


def test_k8s_services_lead_to_the_doors():
    problems = []
    deployments = k8s_objects("Deployment")
    served = set()
    for f, s in k8s_objects("Service"):
        sel = s["spec"].get("selector") or {}
        targets = [d for _, d in deployments if selects(sel, d["spec"]["template"]["metadata"].get("labels") or {})]
        if not targets:
            problems.append(f"{f}: Service {s['metadata']['name']} selects no Deployment")
            continue
        for port in s["spec"].get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            hit = [(c, cp) for d in targets for c in pod_spec(d)["containers"] for cp in c.get("ports") or []
                   if cp.get("name") == target or str(cp.get("containerPort")) == str(target)]
            if not hit:
                problems.append(f"{f}: Service {s['metadata']['name']} port {target} reaches no container port")
            for c, cp in hit:
                served.add(process_of(c))
                if str(cp["containerPort"]) != container_env(c).get("HTTP_PORT", {}).get("value"):
                    problems.append(f"{f}: Service {s['metadata']['name']} reaches {c['name']} on "
                                    f"{cp['containerPort']}, not its HTTP_PORT")
    for p in sorted(doors() - served):
        problems.append(f"{K8S}: no Service reaches the door {p}")
    assert not problems, "\n".join(problems)


def test_k8s_kustomization_lists_every_manifest_but_the_secrets():
    path = os.path.join(K8S, "kustomization.yaml")
    if not os.path.exists(os.path.join(ROOT, path)):
        pytest.skip(f"no {path}")
    resources = set(yaml.safe_load(read(path)).get("resources") or [])
    files = {os.path.basename(f) for f in glob.glob(os.path.join(ROOT, K8S, "*.yaml"))}
    want = files - {"kustomization.yaml"} - {f for f in files if "secret" in f}
    assert resources == want, f"{path}: resources {sorted(resources)}, want {sorted(want)} (no Secrets)"


def test_k8s_kustomization_builds():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kubectl kustomize not run")
    r = subprocess.run([kubectl, "kustomize", os.path.join(ROOT, K8S)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, f"{K8S}: kubectl kustomize failed:\n{r.stderr}"
