"""The Kubernetes manifests of a generated project build, validate and say what they should.

For every combination of the feature toggles (features add the worker, the scrape
annotations, the probes' routes and secret keys): `kubectl kustomize` builds the base and
the production overlay of deploy/kubernetes; the builds and the Secret example match the
Kubernetes API schemas, strictly, of the oldest version the manifests support and of the
newest one kubernetes-validate bundles (offline: the schemas ship in the package); and
checkov, run once over the production builds of all the combinations, finds nothing but
the checks skipped below, each with its reason.

Then what the manifests promise: probes on the health routes (tcpSocket without them);
a grace period above the preStop pause plus the server's drain and graceful timeout, and
for the worker above its job completion wait (read from the rendered jobs/worker.py);
restricted pods that run as the Dockerfile's user; the worker and the scrape annotations
only with their features; a Secret that no kustomization applies and whose keys, like
the ConfigMap's, are settings the service has (parsed from its source); a migration step
whose label selector leaves the API and the worker out.

Every combination is rendered once, in one xdist group: the checkov run needs them all,
and one process rendering them is cheaper than two. kubectl comes from the machine
(.ci/run installs it when missing), checkov from a uv tool of its own that .ci/run
installs (it pins packaging<24, below the suite's), kubernetes-validate from the suite's
dev dependency group.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from harness import Combination, feature_combinations, load_answers, render, run, uv_executable

KUBERNETES = "deploy/kubernetes"
BASE = f"{KUBERNETES}/base"
PRODUCTION = f"{KUBERNETES}/overlays/production"
SECRET_EXAMPLE = f"{PRODUCTION}/secret.example.yaml"
README = f"{KUBERNETES}/README.md"
# The oldest Kubernetes the manifests are for: the preStop `sleep` action is on by default
# from 1.30 (deploy/kubernetes/README.md says so), and the newest schemas bundled.
SCHEMA_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# The Dockerfile's user, whom the pods must run as.
DOCKERFILE_USER = re.compile(r"^USER (\d+):(\d+)$", re.M)
WORKLOAD_KINDS = {"Deployment", "Job"}

# checkov's checks that the manifests fail on purpose, and why (each is also said next to
# the choice in the manifests). The worker skips the probe checks itself, with
# `checkov.io/skip` annotations: the API must still have its probes.
CHECKOV_SKIPS = {
    # The overlay pins a release tag (`images:`); a digest is a choice for the team's
    # CI (`digest:` instead of `newTag:`), which the example cannot know.
    "CKV_K8S_43": "Image should use digest",
    # The service reads its settings from the environment only (pydantic-settings, no
    # secrets directory), so secrets come as environment variables.
    "CKV_K8S_35": "Prefer using secrets as files over secrets as environment variables",
    # Releases are new tags, never re-pushed ones: IfNotPresent lets pods start from a
    # node's cache while the registry is down, which Always would not.
    "CKV_K8S_15": "Image Pull Policy should be Always",
}

COMBINATIONS = feature_combinations()
PER_COMBINATION = pytest.mark.parametrize("combination", COMBINATIONS, ids=[c.id for c in COMBINATIONS])
# One worker renders every combination once (the `deployables` fixture).
pytestmark = pytest.mark.xdist_group("kubernetes")


@dataclass
class Deployable:
    """One combination's rendered project and the builds of its kustomizations."""

    project: Path
    answers: dict[str, Any]
    base: list[dict[str, Any]]
    production: list[dict[str, Any]]
    production_text: str

    def resources(self, kind: str, build: str = "production") -> list[dict[str, Any]]:
        return [r for r in getattr(self, build) if r["kind"] == kind]

    def one(self, kind: str, name: str, build: str = "production") -> dict[str, Any]:
        found = [r for r in self.resources(kind, build) if r["metadata"]["name"] == name]
        assert len(found) == 1, f"{build}: {len(found)} {kind} named {name}"
        return found[0]

    @property
    def slug(self) -> str:
        return str(self.answers["project_slug"])

    def api(self) -> dict[str, Any]:
        return self.one("Deployment", self.slug)

    def workloads(self) -> list[dict[str, Any]]:
        return [r for r in self.production if r["kind"] in WORKLOAD_KINDS]


@functools.cache
def tool(name: str) -> str:
    """A tool from PATH, else from the uv tools' bin folder, where .ci/run installs it."""
    path = shutil.which(name)
    if path is None:
        tool_bin = subprocess.run(
            [uv_executable(), "tool", "dir", "--bin"], capture_output=True, text=True, check=True
        ).stdout.strip()
        path = shutil.which(name, path=tool_bin)
    assert path, f"{name} is missing: .ci/run installs it (its block on kubectl and checkov)"
    return path


def kubectl() -> str:
    return tool("kubectl")


def checkov() -> str:
    return tool("checkov")


def kustomize(project: Path, folder: str) -> str:
    args = [kubectl(), "kustomize", folder]
    return run(args, project, env=dict(os.environ), timeout=120, what=f"kubectl kustomize {folder}").output


def parse(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


# What the tests read: the manifests, the Dockerfile, the package's source (its settings,
# jobs/worker.py) and the answers. Rendering the rest would double the time.
RENDERED = ("deploy/kubernetes/**", "Dockerfile", "src/**", ".copier-answers.yml")


@pytest.fixture(scope="module")
def deployables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Deployable]:
    """Every combination rendered (tasks only write .env) and built, by combination id."""
    only = ["*", "!*/", *(f"!{pattern}" for pattern in RENDERED)]
    result = {}
    for combination in COMBINATIONS:
        destination = tmp_path_factory.mktemp(combination.id) / "orders-service"
        project = render(destination, combination.data, skip_tasks=True, exclude=only)
        production_text = kustomize(project, PRODUCTION)
        result[combination.id] = Deployable(
            project=project,
            answers=load_answers(project),
            base=parse(kustomize(project, BASE)),
            production=parse(production_text),
            production_text=production_text,
        )
    return result


@pytest.fixture
def deployable(deployables: dict[str, Deployable], combination: Combination) -> Deployable:
    return deployables[combination.id]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec(workload)["containers"])


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = containers(workload)
    return container


def rendered(project: Path, relative: str) -> str:
    return (project / relative).read_text(encoding="utf-8")


def package_source(project: Path, answers: dict[str, Any], relative: str) -> str:
    return rendered(project, f"src/{answers['package_name']}/{relative}")


# ---------------------------------------------------------------------------
# Build, schemas, scanner
# ---------------------------------------------------------------------------


@PER_COMBINATION
def test_kustomize_builds_the_resources_of_the_features_that_are_on(deployable: Deployable) -> None:
    slug = deployable.slug
    expected = {
        ("ServiceAccount", slug),
        ("NetworkPolicy", slug),
        ("Deployment", slug),
        ("Service", slug),
        ("HorizontalPodAutoscaler", slug),
        ("PodDisruptionBudget", slug),
        ("Job", f"{slug}-migrate"),
    }
    if deployable.answers["use_job_queue"]:
        expected.add(("Deployment", f"{slug}-worker"))
    for build in ("base", "production"):
        resources = getattr(deployable, build)
        named = {(r["kind"], r["metadata"]["name"]) for r in resources if r["kind"] != "ConfigMap"}
        assert named == expected, build
        (config,) = [r for r in resources if r["kind"] == "ConfigMap"]
        # Named after a hash of its content, so that a changed setting rolls the pods.
        assert re.fullmatch(rf"{slug}-settings-[a-z0-9]{{10}}", config["metadata"]["name"]), build


@functools.cache
def schema_problem(resource_json: str, version: str) -> str | None:
    """Why the resource does not match the strict schema of its kind in `version`, or None.

    By the resource's JSON: most resources are the same in many combinations.
    """
    try:
        kubernetes_validate.validate(json.loads(resource_json), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
    return None


@PER_COMBINATION
@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_manifests_match_the_kubernetes_schemas_strictly(deployable: Deployable, version: str) -> None:
    example = parse(rendered(deployable.project, SECRET_EXAMPLE))
    invalid = []
    for build, resources in [("base", deployable.base), ("production", deployable.production + example)]:
        for resource in resources:
            if problem := schema_problem(json.dumps(resource, sort_keys=True), version):
                invalid.append(f"{build}: {resource['kind']}/{resource['metadata']['name']}: {problem}")
    assert not invalid, "\n".join(invalid)


def test_checkov_finds_nothing_in_the_production_builds(
    deployables: dict[str, Deployable], tmp_path: Path
) -> None:
    # One run over every combination's build: checkov takes ~10 s to start.
    for combination_id, deployable in deployables.items():
        (tmp_path / f"{combination_id}.yaml").write_text(deployable.production_text, encoding="utf-8")
    result = run(
        [
            checkov(),
            "--directory", str(tmp_path),
            "--framework", "kubernetes",
            "--skip-check", ",".join(CHECKOV_SKIPS),
            # Nothing from Prisma Cloud: no guidelines, no custom policies, no network.
            "--skip-download",
            "--output", "json",
            "--quiet",
        ],
        tmp_path,
        timeout=300,
        check=False,
        what="checkov",
    )  # fmt: skip
    try:
        reports = json.loads(result.output)
    except json.JSONDecodeError:
        pytest.fail(f"checkov wrote no JSON report:\n{result.describe()}", pytrace=False)
    (report,) = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{check['check_id']} {check['check_name']}: {check['resource']} in {Path(check['file_path']).name}"
        for check in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    # --quiet leaves the passed checks out of the report, not out of its summary.
    assert summary["passed"] > 0 and summary["resource_count"] >= len(deployables), summary
    assert result.returncode == 0, result.describe()


@PER_COMBINATION
def test_only_the_worker_skips_checkov_checks_and_each_skip_says_why(deployable: Deployable) -> None:
    skips = {
        resource["metadata"]["name"]: sorted(
            value
            for key, value in resource["metadata"].get("annotations", {}).items()
            if key.startswith("checkov.io/skip")
        )
        for resource in deployable.production
    }
    skips = {name: values for name, values in skips.items() if values}
    if deployable.answers["use_job_queue"]:
        (values,) = skips.values()
        assert list(skips) == [f"{deployable.slug}-worker"]
        # The probe checks, each with a reason: `CKV_K8S_8=<why>`.
        assert [value.partition("=")[0] for value in values] == ["CKV_K8S_8", "CKV_K8S_9"]
        assert all(len(value.partition("=")[2].split()) >= 5 for value in values), values
    else:
        assert skips == {}


# ---------------------------------------------------------------------------
# The API: command, probes, graceful stop
# ---------------------------------------------------------------------------


@PER_COMBINATION
def test_api_runs_the_images_default_command_on_its_port(deployable: Deployable) -> None:
    dockerfile = rendered(deployable.project, "Dockerfile")
    assert f'CMD ["{deployable.slug}", "serve", "--host", "0.0.0.0", "--port", "8000"]' in dockerfile
    container = only_container(deployable.api())
    assert "command" not in container and "args" not in container
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]
    assert deployable.one("Service", deployable.slug)["spec"]["ports"][0]["targetPort"] == "http"


@PER_COMBINATION
def test_api_probes_use_the_health_routes_or_the_port_without_them(deployable: Deployable) -> None:
    container = only_container(deployable.api())
    probes = {name: container[f"{name}Probe"] for name in ("startup", "liveness", "readiness")}
    if deployable.answers["use_health_checks"]:
        paths = {name: (probe["httpGet"]["path"], probe["httpGet"]["port"]) for name, probe in probes.items()}
        assert paths == {
            "startup": ("/health/live", "http"),
            "liveness": ("/health/live", "http"),
            "readiness": ("/health/ready", "http"),
        }
    else:
        # No such routes: the probes can only check that the port accepts connections.
        assert [probe.get("tcpSocket") for probe in probes.values()] == [{"port": "http"}] * 3
        assert "/health" not in deployable.production_text


@PER_COMBINATION
def test_api_probe_timeouts_are_above_the_health_check_timeout(deployable: Deployable) -> None:
    if not deployable.answers["use_health_checks"]:
        return
    config = configmap(deployable)
    timeout = float(config["data"]["HEALTH_CHECK_TIMEOUT"])
    container = only_container(deployable.api())
    assert container["readinessProbe"]["timeoutSeconds"] > timeout
    assert container["livenessProbe"]["timeoutSeconds"] > timeout


def server_stop_seconds(deployable: Deployable) -> float:
    """The longest the server takes from SIGTERM to its exit, as settings.env sets it."""
    config = configmap(deployable)["data"]
    # The server's drain, then its graceful timeout for the requests in flight.
    return float(config["DRAIN_SECONDS"]) + float(config["GRACEFUL_TIMEOUT_SECONDS"])


@PER_COMBINATION
def test_api_grace_period_covers_the_prestop_pause_the_drain_and_the_graceful_timeout(
    deployable: Deployable,
) -> None:
    api = deployable.api()
    pause = only_container(api)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause > 0, "no pause before SIGTERM for the endpoints to catch up"
    assert pod_spec(api)["terminationGracePeriodSeconds"] > pause + server_stop_seconds(deployable)


@PER_COMBINATION
def test_worker_exists_only_with_the_job_queue_and_outlasts_its_completion_wait(
    deployable: Deployable,
) -> None:
    workers = [w for w in deployable.resources("Deployment") if w["metadata"]["name"].endswith("-worker")]
    if not deployable.answers["use_job_queue"]:
        assert workers == []
        assert not list((deployable.project / BASE).glob("worker*"))
        return
    (worker,) = workers
    container = only_container(worker)
    assert container["command"] == [deployable.slug, "worker"]
    # It serves no HTTP: nothing to probe, nothing to route to it.
    assert not {"ports", "livenessProbe", "readinessProbe", "startupProbe"} & set(container)
    source = package_source(deployable.project, deployable.answers, "jobs/worker.py")
    match = re.search(r"^SHUTDOWN_GRACE_SECONDS = (\d+)$", source, re.M)
    assert match and '"job_completion_wait": SHUTDOWN_GRACE_SECONDS' in source
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > int(match.group(1))
    assert worker["spec"]["replicas"] == 2  # the production overlay's count


# ---------------------------------------------------------------------------
# Security posture
# ---------------------------------------------------------------------------


@PER_COMBINATION
def test_every_pod_runs_restricted_as_the_images_user(deployable: Deployable) -> None:
    match = DOCKERFILE_USER.search(rendered(deployable.project, "Dockerfile"))
    assert match, "the Dockerfile has no numeric USER uid:gid"
    uid, gid = map(int, match.groups())
    for workload in deployable.workloads():
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        }, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] == deployable.slug, name
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in containers(workload):
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, name
            # A read-only root needs somewhere to write temporary files.
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], name
            assert {"requests", "limits"} <= set(container["resources"]), name
    (account,) = deployable.resources("ServiceAccount")
    assert account["automountServiceAccountToken"] is False


@PER_COMBINATION
def test_only_the_api_port_accepts_connections(deployable: Deployable) -> None:
    (policy,) = deployable.resources("NetworkPolicy")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": deployable.slug}}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http"}]}]
    # The named port that the rule lets in is the API's alone.
    with_http = [
        w["metadata"]["name"]
        for w in deployable.workloads()
        for c in containers(w)
        if any(p.get("name") == "http" for p in c.get("ports", []))
    ]
    assert with_http == [deployable.slug]


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


@PER_COMBINATION
def test_api_pods_carry_scrape_annotations_only_with_health_checks(deployable: Deployable) -> None:
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": "8000", "prometheus.io/path": "/metrics"}
    for workload in deployable.workloads():
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        is_api = workload["metadata"]["name"] == deployable.slug
        expected = scrape if is_api and deployable.answers["use_health_checks"] else {}
        assert {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")} == expected


# ---------------------------------------------------------------------------
# Settings and secrets
# ---------------------------------------------------------------------------

SETTINGS_CLASS = re.compile(r"^class \w+\(([\w., ]*Settings)\):\n((?:(?:    .*)?\n)+)", re.M)
SETTINGS_FIELD = re.compile(r"^    ([a-z_][a-z0-9_]*)\s*:", re.M)


@functools.cache
def setting_names(package: Path) -> frozenset[str]:
    """Every setting's environment variable: the fields of the Settings classes' source."""
    names = set()
    for path in package.rglob("*.py"):
        for match in SETTINGS_CLASS.finditer(path.read_text(encoding="utf-8")):
            names |= {field.upper() for field in SETTINGS_FIELD.findall(match.group(2))}
    names.discard("MODEL_CONFIG")
    assert {"ENVIRONMENT", "SECRET_KEY", "DATABASE_URL"} <= names, f"settings not found in {package}"
    return frozenset(names)


def configmap(deployable: Deployable) -> dict[str, Any]:
    (config,) = deployable.resources("ConfigMap")
    return config


def secret_example(deployable: Deployable) -> dict[str, Any]:
    (secret,) = parse(rendered(deployable.project, SECRET_EXAMPLE))
    return secret


def kustomization_entries(project: Path) -> Iterator[tuple[Path, str]]:
    """Every file that a kustomization in deploy/kubernetes names, with its kustomization."""
    for path in (project / KUBERNETES).rglob("kustomization.yaml"):
        kustomization = yaml.safe_load(path.read_text(encoding="utf-8"))
        for entry in kustomization.get("resources", []) + kustomization.get("components", []):
            yield path, entry
        for patch in kustomization.get("patches", []):
            if "path" in patch:
                yield path, patch["path"]
        generators = kustomization.get("configMapGenerator", []) + kustomization.get("secretGenerator", [])
        for generator in generators:
            for entry in generator.get("envs", []) + generator.get("files", []):
                yield path, entry


@PER_COMBINATION
def test_secret_example_is_in_no_kustomization_and_says_so(deployable: Deployable) -> None:
    example = (deployable.project / SECRET_EXAMPLE).resolve()
    named = [
        f"{kustomization.relative_to(deployable.project)}: {entry}"
        for kustomization, entry in kustomization_entries(deployable.project)
        if (kustomization.parent / entry).resolve() == example
    ]
    assert named == []
    assert not deployable.resources("Secret", "base") and not deployable.resources("Secret")
    assert rendered(deployable.project, SECRET_EXAMPLE).startswith("# NEVER APPLIED AS IS")


@PER_COMBINATION
def test_secret_example_has_the_secret_settings_of_the_features_that_are_on(deployable: Deployable) -> None:
    expected = {"SECRET_KEY", "DATABASE_URL"}
    if deployable.answers["use_rate_limiting"] or deployable.answers["use_job_queue"]:
        expected.add("REDIS_URL")
    if deployable.answers["use_sentry"]:
        expected.add("SENTRY_DSN")
    secret = secret_example(deployable)
    assert set(secret["stringData"]) == expected
    # What the README's `kubectl create secret` sets, too.
    readme_keys = set(re.findall(r"--from-literal=([A-Z_]+)=", rendered(deployable.project, README)))
    assert readme_keys == expected
    assert secret["metadata"]["namespace"] == deployable.api()["metadata"]["namespace"]


@PER_COMBINATION
def test_every_container_reads_the_settings_configmap_and_the_secret_by_name(deployable: Deployable) -> None:
    expected = [
        {"configMapRef": {"name": configmap(deployable)["metadata"]["name"]}},
        {"secretRef": {"name": secret_example(deployable)["metadata"]["name"]}},
    ]
    for workload in deployable.workloads():
        for container in containers(workload):
            assert container["envFrom"] == expected, workload["metadata"]["name"]
            assert "env" not in container, "settings go in settings.env or the Secret"


@PER_COMBINATION
def test_configmap_and_secret_example_name_only_real_settings(deployable: Deployable) -> None:
    package = deployable.project / "src" / str(deployable.answers["package_name"])
    known = setting_names(package)
    config = configmap(deployable)["data"]
    assert config["ENVIRONMENT"] == "production" and config["LOG_FORMAT"] == "json"
    assert set(config) - known == set(), "the ConfigMap names no such setting"
    assert set(secret_example(deployable)["stringData"]) - known == set(), "the Secret names no such setting"


@PER_COMBINATION
def test_configmap_names_the_token_issuer_when_authentication_is_on(deployable: Deployable) -> None:
    config = configmap(deployable)["data"]
    # Production refuses to start without them, and an issuer must be https there.
    if deployable.answers["use_auth"]:
        assert config["AUTH_ISSUER"].startswith("https://")
        assert config["AUTH_AUDIENCE"]
    else:
        assert not {"AUTH_ISSUER", "AUTH_AUDIENCE"} & set(config)


# ---------------------------------------------------------------------------
# Names, labels, the overlay, the release steps
# ---------------------------------------------------------------------------


@PER_COMBINATION
def test_resources_are_named_and_labelled_after_the_project(deployable: Deployable) -> None:
    slug = deployable.slug
    for resource in deployable.production:
        metadata = resource["metadata"]
        assert metadata["name"].startswith(slug), metadata["name"]
        assert metadata["labels"]["app.kubernetes.io/name"] == slug, metadata["name"]
    for workload in deployable.workloads():
        name = workload["metadata"]["name"]
        component = {slug: "api", f"{slug}-worker": "worker", f"{slug}-migrate": "migrate"}[name]
        labels = {"app.kubernetes.io/name": slug, "app.kubernetes.io/component": component}
        assert workload["metadata"]["labels"] == labels, name
        assert workload["spec"]["template"]["metadata"]["labels"] == labels, name
        if workload["kind"] == "Deployment":
            assert workload["spec"]["selector"] == {"matchLabels": labels}, name
    api_pods = {"app.kubernetes.io/name": slug, "app.kubernetes.io/component": "api"}
    assert deployable.one("Service", slug)["spec"]["selector"] == api_pods
    assert deployable.one("PodDisruptionBudget", slug)["spec"]["selector"] == {"matchLabels": api_pods}
    target = deployable.one("HorizontalPodAutoscaler", slug)["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": slug}


@PER_COMBINATION
def test_production_overlay_sets_namespace_image_scale_and_resources(deployable: Deployable) -> None:
    slug = deployable.slug
    assert {r["metadata"].get("namespace") for r in deployable.production} == {slug}
    assert {r["metadata"].get("namespace") for r in deployable.base} == {None}
    images = {c["image"] for w in deployable.workloads() for c in containers(w)}
    assert images == {f"registry.example.com/{slug}:0.1.0"}
    autoscaler = deployable.one("HorizontalPodAutoscaler", slug)["spec"]
    base_autoscaler = deployable.one("HorizontalPodAutoscaler", slug, "base")["spec"]
    assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (3, 10)
    assert autoscaler["minReplicas"] > base_autoscaler["minReplicas"]
    assert autoscaler["metrics"] == base_autoscaler["metrics"]
    assert autoscaler["metrics"][0]["resource"]["name"] == "cpu"
    # The autoscaler owns the API's count: a `replicas` would reset it on every apply.
    assert "replicas" not in deployable.api()["spec"]
    resources = only_container(deployable.api())["resources"]
    base_resources = only_container(deployable.one("Deployment", slug, "base"))["resources"]
    assert resources != base_resources
    assert memory_mib(resources["limits"]["memory"]) > memory_mib(base_resources["limits"]["memory"])


def memory_mib(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match, f"write memory in Mi or Gi: {quantity}"
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def selected(selector: str, labels: dict[str, str]) -> bool:
    """Whether labels match a kubectl label selector of `k=v`, `k!=v` and `k notin (a,b)` terms."""
    for term in re.split(r",(?![^(]*\))", selector):
        if match := re.fullmatch(r"\s*([\w./-]+)\s+notin\s+\(([^)]*)\)\s*", term):
            if labels.get(match.group(1)) in {v.strip() for v in match.group(2).split(",")}:
                return False
        elif match := re.fullmatch(r"\s*([\w./-]+)\s*(!=|==|=)\s*([\w.-]*)\s*", term):
            key, operator, value = match.groups()
            if (labels.get(key) == value) != (operator != "!="):
                return False
        else:
            raise AssertionError(f"selector term not understood: {term!r}")
    return True


@PER_COMBINATION
def test_migration_step_applies_the_job_and_what_it_reads_but_not_the_api_or_worker(
    deployable: Deployable,
) -> None:
    readme = rendered(deployable.project, README)
    (selector,) = re.findall(r"kubectl apply -k \"\$overlay\" -l '([^']+)'", readme)
    applied = {
        (r["kind"], r["metadata"]["name"])
        for r in deployable.production
        if selected(selector, r["metadata"].get("labels", {}))
    }
    slug = deployable.slug
    config = configmap(deployable)["metadata"]["name"]
    assert applied == {
        ("Job", f"{slug}-migrate"),
        ("ConfigMap", config),
        ("ServiceAccount", slug),
        ("NetworkPolicy", slug),
    }
    # Then the whole overlay, after the Job completed.
    steps = [line for line in readme.splitlines() if line.startswith("kubectl ")]
    migrate_step = f"kubectl apply -k \"$overlay\" -l '{selector}'"
    assert steps.index(migrate_step) < steps.index('kubectl apply -k "$overlay"')


@PER_COMBINATION
def test_kubernetes_files_have_no_stray_blank_lines(deployable: Deployable) -> None:
    stray = []
    for path in sorted((deployable.project / KUBERNETES).rglob("*")):
        if path.suffix not in {".yaml", ".env"}:
            continue
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(deployable.project)
        if not text.endswith("\n") or text.endswith("\n\n"):
            stray.append(f"{name}: not one newline at the end")
        lines = text.splitlines()
        for number, line in enumerate(lines[1:-1], 2):
            before, after = lines[number - 2], lines[number]
            # A blank line only between two top-level entries, and one at a time.
            if line.strip() == "" and (line or not before.strip() or not after.strip() or after[0] == " "):
                stray.append(f"{name}:{number}: blank line before {after!r}")
        if lines and not lines[0].strip():
            stray.append(f"{name}:1: blank first line")
    assert stray == []
