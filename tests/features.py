"""What each feature toggle puts in a generated project, so the matrix can check it.

FEATURES maps every bool question of copier.yml (use_health_checks, use_sentry, ...) to
its footprint: the files it adds and the strings only it brings. For every combination
test_matrix asserts that

* a toggle that is off leaves none of it: no such path exists and no text file of the
  project contains any of the strings (the answers file, which records the toggle
  itself, and .env, which holds a random key, excepted);
* a toggle that is on shows at least one of them (a feature that renders nothing, or an
  entry whose names went stale, fails);
* the generated project's pytest runs with the `pytest_args` of every toggle that is on
  (e.g. the flag that turns on its integration tests).

How a feature issue extends it: the change that adds or reshapes `use_<feature>` in
copier.yml updates its entry here in the same commit, for example

    "use_sentry": Footprint(
        paths=("src/{package}/observability/sentry.py",),
        strings=("sentry_sdk", "SENTRY_DSN"),
    ),

`paths` are globs relative to the project root; `{package}` and `{slug}` stand for the
package_name and project_slug answers. `strings` are matched case-sensitively; choose
names only the feature uses (an import, a setting, a dependency), not common words.

test_matrix.py fails while copier.yml has a bool question without an entry here, and
while an entry names a question copier.yml no longer has. An entry may stay empty
(Footprint()) only for a toggle that truly adds nothing of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Footprint:
    paths: tuple[str, ...] = ()
    strings: tuple[str, ...] = ()
    pytest_args: tuple[str, ...] = ()


FEATURES: dict[str, Footprint] = {
    "use_health_checks": Footprint(
        paths=(
            "src/{package}/health.py",
            "src/{package}/metrics.py",
            "tests/test_health.py",
            "tests/test_metrics.py",
            "tests/test_monitoring_files.py",
            "docs/MONITORING.md",
            "deploy/monitoring",
        ),
        strings=("/health/live", "/health/ready", "prometheus_client", "prometheus-client"),
    ),
    "use_sentry": Footprint(
        paths=("src/{package}/sentry.py", "tests/test_sentry.py", "docs/SENTRY.md"),
        strings=("sentry_sdk", "sentry-sdk", "SENTRY_DSN"),
    ),
    "use_integration_tests": Footprint(
        paths=("tests/integration", "docs/TESTING.md"),
        strings=("testcontainers", "--run-integration"),
        pytest_args=("--run-integration",),
    ),
    "use_rate_limiting": Footprint(
        paths=("src/{package}/rate_limiting.py", "tests/test_rate_limiting.py", "docs/RATE_LIMITING.md"),
        strings=("from limits", "import limits", '"limits', "RATE_LIMIT"),
    ),
    "use_auth": Footprint(
        paths=(
            "src/{package}/identity",
            "tests/test_identity*.py",
            "tests/integration/issuer.py",
            "tests/integration/test_issuer*.py",
            "docs/AUTH.md",
        ),
        strings=("AUTH_ISSUER", "AUTH_DEVELOPMENT_KEY", "pyjwt[crypto]", "import jwt"),
    ),
    "use_job_queue": Footprint(
        paths=(
            "src/{package}/jobs",
            "tests/test_jobs.py",
            "tests/integration/test_jobs.py",
            "tests/integration/test_job_queue_faults.py",
            "deploy/kubernetes/base/worker-deployment.yaml",
            "src/{package}/migrations/versions/0002_create_item_results.py",
            "docs/JOBS.md",
        ),
        strings=("from arq", "import arq", '"arq', "JOB_QUEUE_NAME", "WORKER_MAX_JOBS", "item_results"),
    ),
}
