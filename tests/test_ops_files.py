"""The operations files of a generated project pass their own linters.

For every combination of the feature toggles (features change the Dockerfile, the
compose file and the workflow): hadolint on the Dockerfile, the Compose Specification
schema on compose.yaml, actionlint (with shellcheck on `run:` scripts) on the GitHub
workflows, and every YAML file parses. The supply chain too: zizmor (offline) finds
nothing in the workflows, the Dependabot config and the pre-commit config; every
action is pinned by commit SHA with its version in a comment; dependabot.yml matches
its schema and updates the uv lock, the actions and the Docker images; .gitattributes
keeps the files a container or CI reads on LF. With health checks on, the monitoring
files: `promtool check rules` and `promtool test rules` pass on the alerting rules,
the alerts and the dashboard panels are those of the features that are on, and their
queries name only metrics the service serves. The linters come from the suite's own
virtual environment (the dev dependency group), promtool from Debian's prometheus
package (.ci/run installs it), so no Docker engine or network is needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import ROOT, feature_combinations, project_files, render, run

BIN = Path(sys.executable).parent

COMBINATIONS = [
    pytest.param(c, id=c.id, marks=pytest.mark.xdist_group(f"ops-{c.id}")) for c in feature_combinations()
]


@pytest.fixture(scope="module", params=COMBINATIONS)
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    combination = request.param
    # Tasks only write .env, which no linter here reads.
    return render(
        tmp_path_factory.mktemp(combination.id) / "orders-service", combination.data, skip_tasks=True
    )


def tool(name: str) -> str:
    path = BIN / name
    assert path.is_file(), f"{name} is missing from {BIN}: run `uv sync` in the template repo"
    return str(path)


def lint(args: list[str], project: Path, what: str) -> None:
    run(args, project, env=dict(os.environ), timeout=300, what=what)


def test_dockerfile_passes_hadolint(project: Path) -> None:
    assert (project / "Dockerfile").is_file()
    lint([tool("hadolint"), "Dockerfile"], project, "hadolint")


def test_compose_file_matches_the_compose_specification(project: Path) -> None:
    assert (project / "compose.yaml").is_file()
    lint(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml"],
        project,
        "check-jsonschema",
    )


def workflow_files(project: Path) -> list[Path]:
    workflows = sorted((project / ".github" / "workflows").glob("*.y*ml"))
    assert workflows, "no workflow in .github/workflows"
    return workflows


def test_github_workflows_pass_actionlint(project: Path) -> None:
    workflows = [str(p.relative_to(project)) for p in workflow_files(project)]
    lint(
        [tool("actionlint"), "-no-color", f"-shellcheck={tool('shellcheck')}", "-pyflakes=", *workflows],
        project,
        "actionlint",
    )


def test_github_configuration_passes_zizmor(project: Path) -> None:
    # zizmor collects the workflows, .github/dependabot.yml and .pre-commit-config.yaml;
    # --offline skips the audits that ask GitHub (e.g. whether a pinned SHA is really
    # the commit of the version its comment names).
    lint([tool("zizmor"), "--offline", "--strict-collection", "."], project, "zizmor")


# A `uses:` line: the reference, then an optional `# comment`.
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<comment>\S+))?\s*$")
PINNED_REF = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^v\d+(?:\.\d+)*$")


def yaml_uses(workflow: dict[str, Any]) -> Iterator[str]:
    """Every `uses:` of a parsed workflow: reusable workflows (jobs) and actions (steps)."""
    for job in workflow["jobs"].values():
        if "uses" in job:
            yield job["uses"]
        yield from (step["uses"] for step in job.get("steps", []) if "uses" in step)


def test_every_action_is_pinned_to_a_commit_sha_with_its_version(project: Path) -> None:
    unpinned = []
    for path in workflow_files(project):
        text = path.read_text(encoding="utf-8")
        lines = [match for line in text.splitlines() if (match := USES_LINE.match(line))]
        # The comment is only on the line, so each `uses:` must be on a line of its own.
        assert sorted(m["ref"] for m in lines) == sorted(yaml_uses(yaml.safe_load(text))), (
            f"{path.name}: a `uses:` is not on a line of its own"
        )
        for match in lines:
            if match["ref"].startswith("./"):  # an action of the repository itself
                continue
            if not (PINNED_REF.match(match["ref"]) and VERSION_COMMENT.match(match["comment"] or "")):
                unpinned.append(f"{path.name}: {match[0].strip()}")
    rule = "pin by full commit SHA, version in a comment (`@<sha> # v1.2.3`):"
    assert not unpinned, "\n".join([rule, *unpinned])


# dependabot.yml is the same in every project (it is not a .jinja file): checked once.
DEPENDABOT = ROOT / "template" / ".github" / "dependabot.yml"


def test_dependabot_config_matches_its_schema() -> None:
    assert DEPENDABOT.is_file()
    lint(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", str(DEPENDABOT)],
        ROOT,
        "check-jsonschema",
    )


def test_dependabot_updates_the_lock_the_actions_and_the_docker_images() -> None:
    config = yaml.safe_load(DEPENDABOT.read_text(encoding="utf-8"))
    ecosystems = {update["package-ecosystem"] for update in config["updates"]}
    assert {"uv", "github-actions", "docker"} <= ecosystems, f"dependabot.yml updates only {ecosystems}"


def git_attribute(project: Path, tmp_path: Path, attribute: str, paths: list[str]) -> dict[str, str]:
    """The value git gives `attribute` for each path, from the project's .gitattributes."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(project / ".gitattributes", repo)
    # No system or user git config: a core.attributesFile there would change the answer.
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    run(["git", "init", "--quiet"], repo, env=env, what="git init")
    result = run(["git", "check-attr", attribute, "--", *paths], repo, env=env, what="git check-attr")
    # Each line reads `<path>: <attribute>: <value>`.
    return {path: value for path, _, value in (line.split(": ") for line in result.output.splitlines())}


def test_files_a_container_or_ci_reads_are_checked_out_with_lf(project: Path, tmp_path: Path) -> None:
    files = ["Dockerfile", ".dockerignore", "compose.yaml", ".env.example", "deploy/haproxy/haproxy.cfg"]
    files += [str(p.relative_to(project)) for p in workflow_files(project)]
    missing = [f for f in files if not (project / f).is_file()]
    assert not missing, f"not in the project: {missing}"
    shell_script = "scripts/entrypoint.sh"  # none yet: the rule covers the ones to come
    eol = git_attribute(project, tmp_path, "eol", [*files, shell_script])
    not_lf = [f"{path} (eol: {value})" for path, value in eol.items() if value != "lf"]
    assert not not_lf, f"give these `text eol=lf` in .gitattributes: {not_lf}"


def test_other_text_files_have_their_line_endings_normalized(project: Path, tmp_path: Path) -> None:
    files = ["README.md", "pyproject.toml"]
    assert git_attribute(project, tmp_path, "text", files) == dict.fromkeys(files, "auto")


def test_every_yaml_file_parses(project: Path) -> None:
    broken = []
    for path in project_files(project):
        if path.suffix in {".yml", ".yaml"}:
            try:
                list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
            except yaml.YAMLError as error:
                broken.append(f"{path.relative_to(project)}: {error}")
    assert not broken, "\n".join(broken)


# ---------------------------------------------------------------------------
# deploy/monitoring, with use_health_checks: promtool passes the alerting rules and
# their unit tests, the alerts and panels are those of the features that are on, and
# the dashboard is a provisionable Grafana dashboard whose queries, like the rules',
# name only metrics that a generated service serves.
# ---------------------------------------------------------------------------

MONITORING = "deploy/monitoring"
# What /metrics serves (docs/MONITORING.md), as PromQL names it: a histogram by its
# _bucket, _sum and _count series. `up` is Prometheus's own series, not the service's.
SERVED_METRICS = frozenset(
    {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_sum",
        "http_request_duration_seconds_count",
        "http_requests_in_progress",
        "db_pool_size",
        "db_pool_connections_open",
        "db_pool_connections_in_use",
        "app_info",
        "health_check_up",
        "health_check_duration_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    }
)
JOB_QUEUE_METRICS = frozenset({"job_queue_queued_jobs", "job_queue_workers", "job_queue_failed_jobs"})
PROMETHEUS_SERIES = frozenset({"up"})
CORE_ALERTS = {"TargetDown", "HighErrorRatio", "HighLatency", "NotReady", "DatabasePoolSaturated"}

# PromQL, less what names no metric: strings (first: they may hold anything), comments,
# label matchers, ranges and label lists; then names not called as functions.
PROMQL_NON_NAMES = re.compile(
    r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|#.*|\{[^}]*\}|\[[^\]]*\]"""
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
)
PROMQL_NAME = re.compile(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?")
PROMQL_KEYWORDS = frozenset(
    {"and", "or", "unless", "atan2", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan"}
)


def monitoring_folder(project: Path) -> Path | None:
    """deploy/monitoring; None, once checked absent, for a project without health checks."""
    folder = project / MONITORING
    if not answers_of(project)["use_health_checks"]:
        assert not folder.exists(), f"{MONITORING} exists without use_health_checks"
        return None
    return folder


def answers_of(project: Path) -> dict[str, Any]:
    answers: dict[str, Any] = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    return answers


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is not on PATH: .ci/run installs it from Debian's prometheus package"
    return path


def promql_metric_names(query: str) -> set[str]:
    words = PROMQL_NAME.finditer(PROMQL_NON_NAMES.sub(" ", query))
    return {w[1] for w in words if not w[2] and w[1].lower() not in PROMQL_KEYWORDS}


def dashboard_of(folder: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads((folder / "grafana-dashboard.json").read_text(encoding="utf-8"))
    return dashboard


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def dashboard_queries(folder: Path) -> list[str]:
    panels = dashboard_panels(dashboard_of(folder)["panels"])
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def alerting_rules(folder: Path) -> list[dict[str, Any]]:
    rules = yaml.safe_load((folder / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_alerting_rules_pass_promtool_check(project: Path) -> None:
    if monitoring_folder(project) is None:
        return
    lint([promtool(), "check", "rules", f"{MONITORING}/alerts.yml"], project, "promtool check rules")


def test_alerts_pass_their_promtool_unit_tests(project: Path) -> None:
    if monitoring_folder(project) is None:
        return
    lint([promtool(), "test", "rules", f"{MONITORING}/alerts.test.yml"], project, "promtool test rules")


def test_the_alerts_are_those_of_the_features_that_are_on(project: Path) -> None:
    if (folder := monitoring_folder(project)) is None:
        return
    answers = answers_of(project)
    expected = set(CORE_ALERTS)
    if answers["use_job_queue"]:
        expected |= {"JobQueueBacklog", "NoJobWorker", "JobsFailing"}
    if answers["use_rate_limiting"] or answers["use_job_queue"]:
        expected.add("RedisDegraded")
    if answers["use_sentry"]:
        expected.add("SentryDegraded")
    assert {rule["alert"] for rule in alerting_rules(folder)} == expected


def test_every_alert_has_a_unit_test_that_fires_it(project: Path) -> None:
    if (folder := monitoring_folder(project)) is None:
        return
    tests = yaml.safe_load((folder / "alerts.test.yml").read_text(encoding="utf-8"))["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    assert fired == {rule["alert"] for rule in alerting_rules(folder)}


def test_dashboard_is_provisionable_with_a_choice_of_data_source_job_and_instance(project: Path) -> None:
    if (folder := monitoring_folder(project)) is None:
        return
    answers = answers_of(project)
    dashboard = dashboard_of(folder)
    assert (dashboard["uid"], dashboard["title"]) == (answers["project_slug"], answers["project_name"])
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    assert variables["job"]["current"]["value"] == answers["project_slug"]
    assert "instance" in variables
    targets = [t for p in dashboard_panels(dashboard["panels"]) for t in p.get("targets", [])]
    assert targets
    assert {t["datasource"]["uid"] for t in targets} == {"${datasource}"}


def test_dashboard_has_the_panels_of_the_features_that_are_on(project: Path) -> None:
    if (folder := monitoring_folder(project)) is None:
        return
    answers = answers_of(project)
    queries = dashboard_queries(folder)
    names = set().union(*map(promql_metric_names, queries))
    assert names & JOB_QUEUE_METRICS == (JOB_QUEUE_METRICS if answers["use_job_queue"] else set())
    refusals = [q for q in queries if 'status="429"' in q]
    assert bool(refusals) == answers["use_rate_limiting"]


def test_monitoring_queries_name_only_metrics_that_the_service_serves(project: Path) -> None:
    if (folder := monitoring_folder(project)) is None:
        return
    served = SERVED_METRICS | (JOB_QUEUE_METRICS if answers_of(project)["use_job_queue"] else set())
    for what, queries in [
        ("the dashboard", dashboard_queries(folder)),
        ("the alerts", [rule["expr"] for rule in alerting_rules(folder)]),
    ]:
        names = set().union(*map(promql_metric_names, queries))
        assert names, f"no metric found in the queries of {what}"
        assert names - served - PROMETHEUS_SERIES == set(), f"{what} query metrics the service does not serve"
