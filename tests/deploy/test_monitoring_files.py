"""The monitoring content is sound without a server: the Prometheus rules of
runbook/monitoring/rules pass `promtool check rules` and their unit tests (runbook/monitoring/
tests, `promtool test rules`); every alert is tested firing and not firing and names a severity,
a summary, a description and a runbook page that exists; every PromQL expression of the Grafana
dashboard parses; and every metric name the rules and the dashboard read is one that something
produces: a recording rule of the rules, a series Prometheus makes itself (up, ALERTS), a name
RabbitMQ 3.10's plugin exposes (runbook/monitoring/rabbitmq-3.10-metrics.txt), or a metric a
daemon registers (its quoted name in the C sources of services/, saga/ or outbox/).

Needs promtool (Debian's prometheus package, which ./petstore up installs); runs in seconds."""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest
import yaml

SOURCE = os.environ.get("PETSTORE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
MONITORING = os.path.join(SOURCE, "runbook", "monitoring")
RULE_FILES = sorted(glob.glob(os.path.join(MONITORING, "rules", "*.yml")))
TEST_FILES = sorted(glob.glob(os.path.join(MONITORING, "tests", "*.yml")))
DASHBOARD = os.path.join(MONITORING, "dashboard.json")
RABBITMQ_NAMES = os.path.join(MONITORING, "rabbitmq-3.10-metrics.txt")
C_DIRS = ["services", "saga", "outbox"]
# Series Prometheus makes itself.
PROMETHEUS_BUILTINS = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds",
                       "scrape_samples_scraped"}
# Grafana's variables in an expression, and what stands in for them when promtool parses it.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan", "atan2"}


def promtool():
    path = shutil.which("promtool")
    assert path, "promtool is not installed (apt-get install prometheus; ./petstore up does)"
    return path


def run_promtool(*args):
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120,
                          cwd=SOURCE)


def rules():
    """[(file name, rule)] of every rule of every rule file."""
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(open(path))["groups"]:
            out += [(os.path.basename(path), r) for r in group["rules"]]
    return out


def alerts():
    return {r["alert"]: r for _, r in rules() if "alert" in r}


def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def dashboard_panels():
    """Every panel, rows' nested panels included."""
    out = []
    for p in dashboard()["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


def dashboard_exprs():
    """[(panel title, expression)] of every query of the dashboard."""
    return [(p["title"], t["expr"]) for p in dashboard_panels() for t in p.get("targets", [])]


def metric_names(expr):
    """The metric names an expression reads: identifiers that are not functions, aggregations,
    keywords, label names of a grouping clause, or inside strings, label matchers or ranges."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])", s):
        name = m.group(1)
        if name.lower() in PROMQL_WORDS or re.match(r"\s*\(", s[m.end():]):
            continue
        names.add(name)
    return names


def registered_in_c():
    """Every string literal of the C sources of the daemons and their runtime."""
    out = set()
    for d in C_DIRS:
        for path in glob.glob(os.path.join(SOURCE, d, "**", "*.c"), recursive=True):
            with open(path, encoding="utf-8") as f:
                out.update(re.findall(r'"([a-zA-Z_:][a-zA-Z0-9_:]*)"', f.read()))
    # The process metrics are written by metrics.c's renderer, not registered.
    with open(os.path.join(SOURCE, "services", "common", "metrics.c")) as f:
        out.update(re.findall(r"# TYPE (process_[a-z_]+) ", f.read()))
    return out


def rabbitmq_names():
    with open(RABBITMQ_NAMES) as f:
        return {ln.split()[0] for ln in f if ln.strip() and not ln.startswith("#")}


def recorded():
    return {r["record"] for _, r in rules() if "record" in r}


def unknown_names(names, c_names, recordings, rabbit):
    """The names produced by nothing known."""
    bad = set()
    for name in names:
        if name in recordings or name in PROMETHEUS_BUILTINS:
            continue
        if name.startswith("rabbitmq_"):
            if name not in rabbit:
                bad.add(name)
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in c_names and base not in c_names:
            bad.add(name)
    return bad


@pytest.fixture(scope="module")
def producers():
    return registered_in_c(), recorded(), rabbitmq_names()


def test_the_monitoring_files_exist():
    assert RULE_FILES, f"no rule files in {MONITORING}/rules"
    assert TEST_FILES, f"no rule unit tests in {MONITORING}/tests"
    assert os.path.exists(DASHBOARD)


def test_the_rules_pass_promtool_check():
    r = run_promtool("check", "rules", *RULE_FILES)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_rules_pass_their_unit_tests():
    r = run_promtool("test", "rules", *TEST_FILES)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    fired, quiet = set(), set()
    for path in TEST_FILES:
        for test in yaml.safe_load(open(path))["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = set(alerts())
    assert names - fired == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested not firing"
    assert (fired | quiet) - names == set(), "tests of alerts that do not exist"


def anchors(markdown_path):
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    with open(markdown_path) as f:
        for line in f:
            m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if m:
                text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
                out.add(text.replace(" ", "-"))
    return out


def test_every_alert_has_a_severity_its_texts_and_a_runbook_page_that_exists():
    problems = []
    for name, rule in alerts().items():
        if rule.get("labels", {}).get("severity") not in ("page", "ticket"):
            problems.append(f"{name}: severity must be page or ticket")
        ann = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                problems.append(f"{name}: no {key}")
        url = ann.get("runbook_url", "")
        path, _, anchor = url.partition("#")
        full = os.path.join(SOURCE, path)
        if not path.startswith("runbook/") or not os.path.isfile(full):
            problems.append(f"{name}: runbook_url {url} is not a runbook page")
        elif anchor and anchor not in anchors(full):
            problems.append(f"{name}: {path} has no heading with the anchor #{anchor}")
    assert not problems, "\n".join(problems)


def test_every_expression_of_the_dashboard_parses(tmp_path):
    """promtool parses PromQL only inside rule files: each expression becomes a recording
    rule, with Grafana's variables replaced."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    rules_doc = {"groups": [{"name": "dashboard", "rules": []}]}
    for i, (_title, expr) in enumerate(exprs):
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"a Grafana variable promtool cannot stand in for: {expr}"
        rules_doc["groups"][0]["rules"].append({"record": f"dashboard:expr_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules_doc))
    r = run_promtool("check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_metric_of_the_dashboard_is_produced(producers):
    bad = {}
    for title, expr in dashboard_exprs():
        unknown = unknown_names(metric_names(expr), *producers)
        if unknown:
            bad[title] = sorted(unknown)
    assert not bad, f"metrics nothing produces: {bad}"


def test_every_metric_of_the_rules_is_produced(producers):
    bad = {}
    for file, rule in rules():
        unknown = unknown_names(metric_names(rule["expr"]), *producers)
        if unknown:
            bad[f"{file}: {rule.get('record') or rule.get('alert')}"] = sorted(unknown)
    assert not bad, f"metrics nothing produces: {bad}"


def test_the_metric_name_reader_sees_names_and_nothing_else():
    """The reader behind the two tests above, on the shapes the files use."""
    assert metric_names('sum by (status, le) (rate(a_total{job="x",le="2.5"}[5m])) / b:c:d') == \
        {"a_total", "b:c:d"}
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(h_bucket[$__rate_interval])))') \
        == {"h_bucket"}
    assert metric_names('x > on() (14.4 * (1 - y{slo="a"})) and z offset 5m or vector(1)') == \
        {"x", "y", "z"}
    assert metric_names('absent(up{job="petstore"}) or max(q{queue=~".+\\\\.dlq"}) > 1e3') == \
        {"up", "q"}
    assert unknown_names({"petstore_no_such_metric", "rabbitmq_no_such", "up"}, set(), set(),
                         {"rabbitmq_queue_messages"}) == {"petstore_no_such_metric",
                                                          "rabbitmq_no_such"}
    assert unknown_names({"h_bucket", "h_count", "ok:rec"}, {"h"}, {"ok:rec"}, set()) == set()


def test_the_dashboard_asks_for_its_prometheus_and_uses_it_everywhere():
    d = dashboard()
    assert d["schemaVersion"] >= 36
    assert any(i["name"] == "DS_PROMETHEUS" and i["pluginId"] == "prometheus"
               for i in d.get("__inputs", []))
    assert any(v["name"] == "DS_PROMETHEUS" and v["type"] == "datasource" and
               v["query"] == "prometheus" for v in d["templating"]["list"])
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dashboard_panels():
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        assert p.get("targets"), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]


def test_the_dashboard_has_the_panels_an_operator_needs():
    exprs = " ".join(e for _, e in dashboard_exprs())
    for needed in ["petstore_orders_finished_total", "petstore_http_request_duration_seconds_bucket",
                   "petstore_order_completion_seconds_bucket", "rabbitmq_queue_messages_ready",
                   "rabbitmq_queue_messages_unacked", "petstore_outbox_backlog",
                   "petstore_outbox_lag_seconds", "petstore_dead_lettered_total",
                   "petstore_saga_needs_operator", "petstore_ready",
                   "petstore:slo_error_ratio:rate1h", "petstore:slo_error_budget_remaining:ratio30d"]:
        assert needed in exprs, f"no panel reads {needed}"


def test_the_rules_read_the_scrape_jobs_the_launcher_writes():
    """The launcher's prometheus.yml names the jobs petstore, rabbitmq and rabbitmq-per-object;
    a rule selecting another job would never match."""
    jobs = set()
    for _, rule in rules():
        jobs |= set(re.findall(r'job=~?"([^"]+)"', rule["expr"]))
    allowed = {"petstore", "rabbitmq", "rabbitmq-per-object", "rabbitmq|rabbitmq-per-object"}
    assert jobs and jobs <= allowed, jobs - allowed
