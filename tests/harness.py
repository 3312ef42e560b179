"""Helpers shared by the template's test suite.

Everything here is plain functions and small data classes; pytest fixtures and hooks
live in ``conftest.py``. The helpers:

* read ``copier.yml`` (questions, the bool feature toggles, every combination of them);
* render the template with copier's Python API into a directory;
* run commands inside a generated project with a clean environment (its own virtual
  environment, the interpreter matching its ``python_version`` answer, the shared uv
  cache) and report failures with the command's output;
* list the tests a generated project's pytest run skipped (from its junit report);
* time the steps of a rendered combination so the run can print a timing table.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIER_YML = ROOT / "copier.yml"
ANSWERS_FILE = ".copier-answers.yml"

# project_name has no default: every render passes one. Everything else defaults.
BASE_DATA: dict[str, Any] = {"project_name": "Orders Service"}
DEFAULT_SLUG = "orders-service"
DEFAULT_PACKAGE = "orders_service"

# Files copier renders from a `.jinja` source and that may still legitimately contain
# template-looking markers after rendering, as (glob relative to the project, regex of
# the allowed marker). Everything else must contain no `{{`, `{%` or `{#`.
ALLOWED_TEMPLATE_MARKERS: tuple[tuple[str, str], ...] = (
    # GitHub Actions expressions: ${{ github.ref }}
    (".github/workflows/*.yml", r"\$\{\{"),
    (".github/workflows/*.yaml", r"\$\{\{"),
    # Prometheus alert templates: {{ $labels.instance }}, {{ $value }}
    ("deploy/monitoring/*.yml", r"\{\{ \$"),
)
# Files that are empty on purpose (PEP 561 marker).
ALLOWED_EMPTY_FILES: frozenset[str] = frozenset({"py.typed"})

# Output shown on failure is cut to its tail: the end of a log says what went wrong.
MAX_SHOWN_OUTPUT = 20_000


# ---------------------------------------------------------------------------
# copier.yml
# ---------------------------------------------------------------------------


@functools.cache
def copier_config() -> dict[str, Any]:
    data = yaml.safe_load(COPIER_YML.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "copier.yml must be a mapping"
    return data


def questions() -> dict[str, dict[str, Any]]:
    """Every question in copier.yml (settings start with an underscore)."""
    result: dict[str, dict[str, Any]] = {}
    for name, spec in copier_config().items():
        if name.startswith("_"):
            continue
        result[name] = spec if isinstance(spec, dict) else {"default": spec}
    return result


def is_computed(spec: Mapping[str, Any]) -> bool:
    """A `when: false` question is never asked and never stored: a computed value."""
    when = spec.get("when", True)
    return when is False or (isinstance(when, str) and when.strip().lower() == "false")


def asked_questions() -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in questions().items() if not is_computed(spec)}


def feature_toggles() -> list[str]:
    """The bool questions of copier.yml, in file order: the features of the template."""
    return [name for name, spec in asked_questions().items() if spec.get("type") == "bool"]


def _short(toggle: str) -> str:
    return toggle.removeprefix("use_").replace("_", "")


@dataclass(frozen=True)
class Combination:
    """One assignment of every feature toggle."""

    toggles: tuple[tuple[str, bool], ...]

    @property
    def data(self) -> dict[str, bool]:
        return dict(self.toggles)

    @property
    def id(self) -> str:
        if not self.toggles:
            return "defaults"
        return "-".join(_short(n) if on else f"no{_short(n)}" for n, on in self.toggles)

    def enabled(self) -> list[str]:
        return [n for n, on in self.toggles if on]

    def disabled(self) -> list[str]:
        return [n for n, on in self.toggles if not on]


def feature_combinations() -> list[Combination]:
    """Every combination of the feature toggles: 2**N of them, one when N == 0."""
    toggles = feature_toggles()
    return [
        Combination(tuple(zip(toggles, values, strict=True)))
        for values in itertools.product((True, False), repeat=len(toggles))
    ]


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def render(
    dst: Path,
    data: Mapping[str, Any] | None = None,
    *,
    skip_tasks: bool = False,
    overwrite: bool = False,
    exclude: Sequence[str] = (),
) -> Path:
    """Render the template (working tree of this repo, tasks on unless told) into dst.

    `exclude` adds gitignore-style patterns of files not to render, for a test that
    reads only some of a project (rendering is most of such a test's time).
    """
    import copier

    with warnings.catch_warnings():
        # Rendering uncommitted template changes is what a test run wants.
        warnings.simplefilter("ignore")
        copier.run_copy(
            str(ROOT),
            str(dst),
            data={**BASE_DATA, **(data or {})},
            defaults=True,
            unsafe=True,  # the template has tasks; the suite trusts it
            skip_tasks=skip_tasks,
            overwrite=overwrite,
            exclude=list(exclude),
            quiet=True,
            # Without a ref copier takes the newest git tag; the suite checks HEAD plus
            # the uncommitted changes of the working tree.
            vcs_ref="HEAD",
        )
    return dst


def load_answers(project: Path) -> dict[str, Any]:
    data = yaml.safe_load((project / ANSWERS_FILE).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def project_files(project: Path) -> list[Path]:
    """Every file of a rendered project, outside the virtual environment and caches."""
    skip_dirs = {".venv", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(project):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        files.extend(Path(dirpath, f) for f in sorted(filenames))
    return files


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def env_file_keys(path: Path) -> list[str]:
    """Names assigned in a dotenv file, commented-out ones included (`# KEY=...`)."""
    if not path.is_file():
        return []
    keys = re.findall(r"^[ \t]*#?[ \t]*(?:export[ \t]+)?([A-Z][A-Z0-9_]*)[ \t]*=", path.read_text(), re.M)
    return list(dict.fromkeys(keys))


def parse_env_file(path: Path) -> dict[str, str]:
    """Active assignments of a dotenv file (comments skipped, quotes removed)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", line)
        if not match:
            continue
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


# ---------------------------------------------------------------------------
# Running commands in a generated project
# ---------------------------------------------------------------------------


def _version_of(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache
def python_for(version: str) -> str:
    """Path of a working interpreter for `version` ("3.13"), for uv's UV_PYTHON.

    uv is not allowed to download interpreters here, and a pyenv shim on PATH may point
    at nothing, so every candidate is run once to check it. Override with
    TEMPLATE_TEST_PYTHON_3_13=/path/to/python3.13 (and so on).
    """
    candidates: list[str] = []
    override = os.environ.get(f"TEMPLATE_TEST_PYTHON_{version.replace('.', '_')}")
    if override:
        candidates.append(override)
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))

    def patch_level(path: str) -> int:
        match = re.search(rf"/{re.escape(version)}\.(\d+)/", path)
        return int(match.group(1)) if match else -1

    candidates += sorted(
        glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python3"), key=patch_level, reverse=True
    )
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        candidates.append(sys.executable)
    for name in (f"python{version}", "python3"):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    for candidate in candidates:
        if _version_of(candidate) == version:
            return candidate
    pytest.fail(
        f"No working Python {version} found (tried {candidates}); install it or set "
        f"TEMPLATE_TEST_PYTHON_{version.replace('.', '_')}",
        pytrace=False,
    )


@functools.cache
def uv_executable() -> str:
    """The uv of the suite's own environment (dev group), else the one that runs it."""
    candidates = [Path(sys.executable).parent / "uv", os.environ.get("UV"), shutil.which("uv")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and "/shims/" not in str(candidate):
            return str(candidate)
    pytest.fail("uv not found: run `uv sync` in the template repository", pytrace=False)


# Variables of the outer run that must not leak into a generated project.
_DROPPED_VARIABLES = {
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "UV_PROJECT_ENVIRONMENT",
    "UV_PYTHON",
    "UV_FROZEN",
    "UV_LOCKED",
    "UV_NO_SYNC",
    "UV_OFFLINE",
    "FORCE_COLOR",
    "PY_COLORS",
    "CLICOLOR_FORCE",
    # Set on some CI machines: without bytecode caches, every process a generated
    # project starts (its server's workers, its CLI) compiles its imports again.
    "PYTHONDONTWRITEBYTECODE",
}
_DROPPED_PREFIXES = ("PYTEST_", "COV_CORE_", "MYPY_")


def project_env(
    project: Path,
    extra: Mapping[str, str] | None = None,
    *,
    service_urls: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A clean environment for commands run in a generated project.

    * no trace of the template suite's own virtual environment or pytest run;
    * none of the service's settings (every name in its `.env.example`), so the service
      sees only its defaults and its `.env`, as on a fresh machine;
    * UV_PYTHON set to an interpreter matching the project's `python_version` answer;
    * the uv cache shared with every other project (uv locks it; it is safe to share);
    * TEST_DATABASE_URL / TEST_REDIS_URL passed through (or the isolated ones given).
    """
    env = dict(os.environ)
    settings = set(env_file_keys(project / ".env.example"))
    for key in list(env):
        if key in _DROPPED_VARIABLES or key.startswith(_DROPPED_PREFIXES) or key in settings:
            del env[key]
    # The suite's venv is first on PATH under `uv run pytest`: take it off.
    own_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != own_bin)

    version = (
        str(load_answers(project).get("python_version", "")) if (project / ANSWERS_FILE).exists() else ""
    )
    if version:
        env["UV_PYTHON"] = python_for(version)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["UV_NO_PROGRESS"] = "1"
    env["NO_COLOR"] = "1"
    env.pop("TEST_DATABASE_URL", None)
    env.pop("TEST_REDIS_URL", None)
    for key in ("TEST_DATABASE_URL", "TEST_REDIS_URL"):
        value = (service_urls or {}).get(key, os.environ.get(key))
        if value:
            env[key] = value
    env.update(extra or {})
    return env


@dataclass
class Result:
    args: list[str]
    cwd: Path
    returncode: int
    output: str
    seconds: float
    timed_out: bool = False

    @property
    def command(self) -> str:
        return " ".join(self.args)

    def describe(self) -> str:
        status = "timed out" if self.timed_out else f"exited {self.returncode}"
        output = self.output
        if len(output) > MAX_SHOWN_OUTPUT:
            output = (
                f"[... {len(output) - MAX_SHOWN_OUTPUT} characters cut ...]\n" + output[-MAX_SHOWN_OUTPUT:]
            )
        return f"$ {self.command}   (in {self.cwd}, {status} after {self.seconds:.1f}s)\n{output}"


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run(
    args: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
    what: str | None = None,
) -> Result:
    """Run a command in `cwd` (a generated project), output merged and captured.

    `env` defaults to `project_env(cwd)`. With check=True a non-zero exit fails the test
    with the command and its output. The command runs in its own process group so a
    timeout kills its children too.
    """
    argv = [uv_executable(), *args[1:]] if args and args[0] == "uv" else list(args)
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env) if env is not None else project_env(cwd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        output, _ = proc.communicate()
    result = Result(list(args), cwd, proc.returncode, output or "", time.monotonic() - start, timed_out)
    if check and (timed_out or result.returncode != 0):
        label = f"{what} failed" if what else "command failed"
        pytest.fail(f"{label}:\n{result.describe()}", pytrace=False)
    return result


def skipped_tests(junit_xml: Path) -> list[str]:
    """The tests a pytest run skipped, each with its reason, read from its --junitxml report."""
    if not junit_xml.is_file():
        return []
    return [
        f"{case.get('classname')}::{case.get('name')}: {skipped.get('message', '')}"
        for case in ElementTree.parse(junit_xml).getroot().iter("testcase")
        for skipped in case.findall("skipped")
    ]


# ---------------------------------------------------------------------------
# Timing of a combination's steps
# ---------------------------------------------------------------------------

TIMING_PROPERTY = "template_timings"
TIMED_STEPS = ("render", "static", "sync", "ruff", "format", "mypy", "pytest")


@dataclass
class Steps:
    """The timed steps of one combination.

    A step either stops the combination at once (`run(..., stop=True)`, for render and
    sync, which everything after needs) or is recorded as failed while the independent
    steps after it still run; `finish()` then fails the test naming every failed step
    with its output, so one expensive run reports everything that is wrong.
    """

    label: str
    seconds: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time a block; an exception (pytest.fail included) stops the combination."""
        start = time.monotonic()
        try:
            yield
        except BaseException as error:
            self.failures.setdefault(name, str(error))
            raise
        finally:
            self.seconds[name] = time.monotonic() - start

    def fail(self, name: str, details: str) -> None:
        """Record a failed step without stopping."""
        self.failures[name] = details

    def run(self, name: str, args: Sequence[str], cwd: Path, *, stop: bool = False, **kwargs: Any) -> Result:
        with self.step(name):
            result = run(args, cwd, check=False, **kwargs)
        if result.timed_out or result.returncode != 0:
            self.fail(name, result.describe())
            if stop:
                self.finish()
        return result

    def finish(self) -> None:
        if self.failures:
            report = "\n\n".join(
                f"--- step '{name}' failed ---\n{details}" for name, details in self.failures.items()
            )
            pytest.fail(f"[{self.label}] failed steps: {', '.join(self.failures)}\n\n{report}", pytrace=False)

    def as_property(self) -> dict[str, Any]:
        return {"label": self.label, "seconds": dict(self.seconds), "failed": sorted(self.failures)}
