"""The release gate: run the smoke suite against a deployment, record the run, and promote only what passed.

`make qa` (`python -m backend.ops.cli qa`), the nightly Celery task and a deploy script
all go through `run_smoke_suite`, so a run is recorded the same way whoever asked
for it. `make promote` (`python -m backend.ops.cli promote`) goes through `promote`,
which refuses unless the last recorded run against the source deployment passed
recently enough. The suite itself is `qa/` (pytest marker `smoke`), run in a child
process exactly as a person would run it, so what the gate measures is what a
person would see.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from backend.core.models import QaRun, as_utc, utcnow
from backend.services.status import qa_runs
from backend.core.key_format import mask_keys
from backend.services.status.qa_runs import QaCounts
from backend.core.settings import PROJECT_ROOT, get_settings

#: Where `make qa` leaves its JUnit XML, HTML report, screenshots and log (git-ignored).
DEFAULT_ARTIFACTS = PROJECT_ROOT / "qa" / "artifacts"
#: A run that takes longer than this is stopped and recorded as failed (exit code 124, as `timeout` says).
SUITE_TIMEOUT_S = 30 * 60
TIMED_OUT = 124
#: What the suite needs beyond the app's own requirements (requirements-dev.txt).
SUITE_MODULES = ("pytest", "pytest_html", "playwright", "openai")
#: The owner and scopes of the short-lived key the nightly run mints for itself.
NIGHTLY_KEY_OWNER = "qa|nightly"
NIGHTLY_KEY_SCOPES = ("tts:read", "tts:write", "keys:read")


class QaGateError(Exception):
    """Something an operator must fix before the gate can work; the message says what, in one sentence."""


class PromotionRefused(QaGateError):
    """The source deployment has no recent passing QA run."""


@dataclass(frozen=True)
class SuiteFiles:
    """Where one run of the suite writes its outputs."""

    directory: Path

    @property
    def junit(self) -> Path:
        return self.directory / "junit.xml"

    @property
    def html(self) -> Path:
        return self.directory / "report.html"

    @property
    def log(self) -> Path:
        return self.directory / "pytest.log"

    def clear(self) -> None:
        """Remove the previous run's outputs, so a crashed run is never read as the last one's results."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in (self.junit, self.html, self.log):
            path.unlink(missing_ok=True)


def require_suite_installed() -> None:
    """The suite needs the dev requirements; say so plainly instead of failing inside pytest."""
    missing = [name for name in SUITE_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise QaGateError(f"the QA suite needs {', '.join(missing)}: install the dev requirements "
                          "(make setup-test) on the machine that runs it")


def smoke_command(files: SuiteFiles) -> list[str]:
    """pytest on the smoke subset of `qa/`, writing a JUnit XML and a self-contained HTML report."""
    return [sys.executable, "-m", "pytest", "qa", "-m", "smoke", "-p", "no:cacheprovider",
            f"--junitxml={files.junit}", f"--html={files.html}", "--self-contained-html"]


def suite_environment(base_url: str, api_key: str | None, files: SuiteFiles) -> dict[str, str]:
    """The child's environment: the target, the key for the API checks, and where screenshots go."""
    env = {**os.environ, "LOCKN_BASE_URL": base_url, "LOCKN_QA_ARTIFACTS": str(files.directory),
           "PYTHONUNBUFFERED": "1"}
    env.pop("LOCKN_QA_KEY", None)
    if api_key:
        env["LOCKN_QA_KEY"] = api_key
    return env


def run_process(command: list[str], env: dict[str, str], output: IO[str] | None, timeout_s: float) -> int:
    """Run `command` in its own process group; on timeout stop the whole group (pytest, Chromium, …)."""
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return TIMED_OUT


def parse_junit(path: Path) -> QaCounts:
    """Count outcomes per test case: a failure or an error fails it, a skip skips it, anything else passed."""
    root = ElementTree.parse(path).getroot()
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        outcome = "failed" if tags & {"failure", "error"} else "skipped" if "skipped" in tags else "passed"
        counts[outcome] += 1
    return QaCounts(**counts)


def mask_file(path: Path) -> str:
    """Rewrite `path` with every key-shaped string masked (a report must never carry the QA key); its text."""
    text = mask_keys(path.read_text(encoding="utf-8", errors="replace"))
    path.write_text(text, encoding="utf-8")
    return text


def archive_report(files: SuiteFiles, run_id: str) -> Path | None:
    """Keep the run's report in the data directory, where the API serves it from; None if there is none."""
    if files.junit.exists():
        mask_file(files.junit)
    if not files.html.exists():
        return None
    destination = get_settings().data_dir / "qa-reports" / f"{run_id}.html"
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(mask_file(files.html), encoding="utf-8")
    return destination


def run_smoke_suite(base_url: str, trigger: str, api_key: str | None = None, artifacts: Path | None = None,
                    echo: bool = False) -> QaRun:
    """Run the smoke suite against `base_url`, record the run, and return it (passed or not).

    `echo` shows pytest's output on our terminal (`make qa`); otherwise it goes to `pytest.log` beside the
    report (the nightly task has no terminal).

    A run passes only when pytest exits 0, no test failed and at least one passed: a suite that
    could not start, or skipped everything, proves nothing about the release.
    """
    target, trigger = qa_runs.normalise_target(base_url), qa_runs.check_trigger(trigger)
    require_suite_installed()
    files = SuiteFiles(artifacts or DEFAULT_ARTIFACTS)
    files.clear()
    started = utcnow()
    with nullcontext(None) if echo else files.log.open("w", encoding="utf-8") as output:
        code = run_process(smoke_command(files), suite_environment(target, api_key, files), output, SUITE_TIMEOUT_S)
    counts = parse_junit(files.junit) if files.junit.exists() else QaCounts()
    run_id = qa_runs.new_run_id()
    report = archive_report(files, run_id)
    return qa_runs.record(target, trigger, started, utcnow(), counts, code == 0 and counts.failed == 0 and
                          counts.passed > 0, report, run_id=run_id)


@contextmanager
def temporary_qa_key() -> Iterator[str]:
    """A key for this deployment's own API checks, valid for one hour and revoked as soon as the run ends."""
    from backend.services.keys.service import KeySpec, RateLimit, build_key_service

    service = build_key_service(get_settings())
    try:
        row, key = service.create(NIGHTLY_KEY_OWNER, KeySpec("nightly QA", "live", NIGHTLY_KEY_SCOPES,
                                                             RateLimit(600, 60), None, utcnow() + timedelta(hours=1)))
        try:
            yield key
        finally:
            service.revoke(NIGHTLY_KEY_OWNER, row.id)
    finally:
        service.close()


def run_nightly() -> QaRun:
    """The nightly regression: the smoke suite against this deployment itself, recorded as `nightly`."""
    settings = get_settings()
    with temporary_qa_key() as key:
        return run_smoke_suite(settings.base_url, "nightly", key, settings.data_dir / "qa-artifacts" / "nightly")


def describe_run(run: QaRun) -> str:
    """One line for people: outcome, counts, when, and where the report is."""
    outcome = "passed" if run.passed else "FAILED"
    when = (as_utc(run.finished_at) or utcnow()).strftime("%Y-%m-%d %H:%M UTC")
    report = f"; report: {run.report_path}" if run.report_path else "; no report was written"
    return (f"QA run {run.id} against {run.target} {outcome} ({run.passed_count} passed, {run.failed_count} "
            f"failed, {run.skipped_count} skipped) at {when}, trigger {run.trigger}{report}")


def promotion_refusal(run: QaRun | None, source: str, max_age: timedelta, now: datetime) -> str | None:
    """Why `source` may not be promoted now, or None when its last QA run passed within `max_age`."""
    hint = f"run `make qa LOCKN_BASE_URL={source}` first"
    if run is None:
        return f"no QA run against {source} has been recorded; {hint}"
    if not run.passed:
        return f"the last QA run against {source} did not pass: {describe_run(run)}"
    age = now - (as_utc(run.finished_at) or now)
    if age > max_age:
        return (f"the last QA run against {source} passed, but {age.total_seconds() / 3600:.1f} h ago "
                f"(LOCKN_PROMOTE_MAX_AGE_H allows {max_age.total_seconds() / 3600:g} h); {hint}")
    return None


def git(repo: Path, *args: str) -> None:
    """Run git in `repo`; its own message becomes ours when it fails."""
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise QaGateError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip() or result.stdout.strip()}")


def run_promote_command(command: str, source: str, target: str, tag: str) -> None:
    """The operator's hook (`LOCKN_PROMOTE_COMMAND`), with FROM, TO and RELEASE_TAG in its environment."""
    env = {**os.environ, "FROM": source, "TO": target, "RELEASE_TAG": tag}
    result = subprocess.run(command, shell=True, cwd=PROJECT_ROOT, env=env, check=False)
    if result.returncode != 0:
        raise QaGateError(f"LOCKN_PROMOTE_COMMAND exited with {result.returncode}")


def promote(source: str, target: str, repo: Path = PROJECT_ROOT, now: datetime | None = None) -> str:
    """Tag the release and run the promote hook, only if `source`'s last QA run passed recently; the tag.

    If the hook fails, the tag is removed again: a `release-*` tag means the promotion happened.
    """
    settings = get_settings()
    source, now = qa_runs.normalise_target(source), now or utcnow()
    refusal = promotion_refusal(qa_runs.last_run(source), source, timedelta(hours=settings.promote_max_age_h), now)
    if refusal is not None:
        raise PromotionRefused(f"refusing to promote {source} to {target}: {refusal}")
    tag = f"release-{now:%Y%m%dT%H%M%SZ}"
    git(repo, "tag", tag)
    if settings.promote_command:
        try:
            run_promote_command(settings.promote_command, source, target, tag)
        except QaGateError as exc:
            git(repo, "tag", "-d", tag)
            raise QaGateError(f"{exc}; the tag {tag} was removed again") from None
    return tag
