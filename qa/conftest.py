"""Browser QA against a real LockN: the one at `LOCKN_BASE_URL`, or one this session starts.

Started here, LockN runs exactly as `make run` runs it (migrations, embedded
broker, a Celery worker, Reflex's production build on one port), on a free
port with its own data directory, once per test session.

Against `LOCKN_BASE_URL` (`make qa`), the API checks use the key in `LOCKN_QA_KEY`
and the sign-in checks run only where a development identity provider answers;
otherwise they skip and say why. Screenshots go to `LOCKN_QA_ARTIFACTS`
(default `qa/artifacts/`) and into the HTML report (pytest-html) of the test
that took them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("LOCKN_QA_ARTIFACTS") or PROJECT_ROOT / "qa" / "artifacts")
DEV_IDP_METADATA = "/dev-idp/.well-known/openid-configuration"
START_TIMEOUT_S = 240
#: Chromium flags that keep a headless run quiet on a machine with no outside network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
#: The environment of the app this session starts (so the admin CLI reaches the same database).
APP_ENV: dict[str, str] = {}
VIEWPORTS = {"mobile": {"width": 375, "height": 812}, "desktop": {"width": 1280, "height": 800}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_live(base_url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"LockN exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base_url}/health/live", timeout=1).status_code == 200 and \
                    httpx.get(base_url + "/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"LockN did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def wait_until_healthy(base_url: str, timeout_s: float = 90.0) -> None:
    """Until `/health` is 200: the worker has reported in with its engines."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if httpx.get(f"{base_url}/health", timeout=5).status_code == 200:
            return
        time.sleep(0.5)
    raise RuntimeError(f"LockN was not healthy within {timeout_s} s: {httpx.get(f'{base_url}/health').text}")


def stop_process_group(process: subprocess.Popen, sig: signal.Signals = signal.SIGINT) -> None:
    """Ctrl-C (or `sig`), as a person would stop it; SIGKILL only if it hangs."""
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def external_target() -> bool:
    """True when the suite checks a deployment it did not start (`LOCKN_BASE_URL`)."""
    return bool(os.environ.get("LOCKN_BASE_URL"))


def reachable(base_url: str) -> str:
    """`base_url` if LockN answers there; otherwise every test errors with this one sentence."""
    try:
        answer = str(httpx.get(f"{base_url}/health/live", timeout=10).status_code)
    except httpx.HTTPError as exc:
        answer = f"{type(exc).__name__}: {exc}"
    if answer != "200":
        pytest.fail(f"nothing answers at {base_url}/health/live ({answer}): is LOCKN_BASE_URL the running "
                    "deployment?", pytrace=False)
    return base_url


@pytest.fixture(scope="session")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a running LockN, started (and stopped, with every child) by this fixture if need be."""
    if external_target():
        yield reachable(os.environ["LOCKN_BASE_URL"].rstrip("/"))
        return
    port = free_port()
    data_dir = tmp_path_factory.mktemp("lockn-app")
    APP_ENV.update({"LOCKN_ENV": "test", "LOCKN_PORT": str(port), "LOCKN_DATA_DIR": str(data_dir)})
    env = {**os.environ, **APP_ENV}
    for name in ("LOCKN_DATABASE_URL", "LOCKN_REDIS_URL", "LOCKN_PUBLIC_URL"):
        env.pop(name, None)
    log = data_dir / "app.log"
    # The web tier and broker as `make run` starts them; the worker separately, as on a second machine,
    # so tests can stop and start it (see `app_worker`).
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "backend.ops.cli", "run", "--no-worker"], cwd=PROJECT_ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://localhost:{port}"
    webhooks: subprocess.Popen | None = None
    try:
        wait_until_live(url, process, log)
        WORKER.start(env)
        webhooks = start_webhook_worker(env)
        wait_until_healthy(url)
        yield url
    finally:
        WORKER.stop()
        if webhooks is not None:
            stop_process_group(webhooks, signal.SIGTERM)
        stop_process_group(process)


def start_webhook_worker(env: dict[str, str]) -> subprocess.Popen:
    """The webhook worker, as `make run` starts it beside the speech worker (deliveries have their own queue)."""
    from backend.core.settings import get_settings
    from backend.ops.supervisor import webhook_worker_command

    return subprocess.Popen(webhook_worker_command(get_settings()), cwd=PROJECT_ROOT, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class AppWorker:
    """The app's Celery worker, run like `make worker`: tests may stop it and start it again."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    def start(self, env: dict[str, str] | None = None) -> None:
        from backend.ops.supervisor import worker_command

        self.env = env or self.env
        self.process = subprocess.Popen(worker_command(), cwd=PROJECT_ROOT, env=self.env, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, signal.SIGTERM)
            self.process = None


WORKER = AppWorker()


@pytest.fixture
def app_worker(base_url: str) -> AppWorker:
    if external_target():
        pytest.skip("stops and starts the app's worker: only with the app this suite starts (LOCKN_BASE_URL unset)")
    return WORKER


@pytest.fixture(scope="session")
def app_settings(base_url: str) -> Iterator[Path]:
    """This process's settings pointed at the app this suite started (its database, broker, data directory and
    URL), for tests that call a service or a task in-process against it; its data directory. Restored after."""
    if not APP_ENV:
        pytest.skip("needs the app this suite starts (LOCKN_BASE_URL unset): it uses that app's database")
    from backend.core.settings import Settings
    from tests.conftest import reset_caches

    with pytest.MonkeyPatch.context() as patch:
        for name in ("LOCKN_DATABASE_URL", "LOCKN_REDIS_URL", "LOCKN_PUBLIC_URL"):
            patch.delenv(name, raising=False)
        for name, value in APP_ENV.items():
            patch.setenv(name, value)
        patch.setitem(Settings.model_config, "env_file", None)
        reset_caches()
        yield Path(APP_ENV["LOCKN_DATA_DIR"])
    reset_caches()


@pytest.fixture(scope="session")
def nightly_run(app_settings: Path) -> "QaRun":  # noqa: F821
    """The nightly regression task, called for real in this process against the running app: its recorded run."""
    from backend.services.status import qa_runs
    from workers.tasks import qa_regression

    result = qa_regression.apply().get()
    run = qa_runs.last_run()
    assert run is not None and run.id == result["id"], result
    return run


@pytest.fixture(scope="session")
def dev_identity_provider(base_url: str) -> str:
    """The development identity provider's issuer; skips (with why) where the deployment signs in elsewhere."""
    url = base_url + DEV_IDP_METADATA
    try:
        response = httpx.get(url, timeout=10)
        issuer = response.json().get("issuer") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        issuer = None
    if not issuer:
        pytest.skip(f"no development identity provider at {url} (this deployment signs in through Auth0): "
                    "the sign-in → dashboard → studio path needs a person or a test account")
    return issuer


def chromium_executable() -> str | None:
    """Debian's Chromium when installed (Playwright cannot download its own browser offline)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator["playwright.sync_api.Browser"]:  # noqa: F821
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, base_url: str):
    """Open a path at a named viewport; collects console errors on `page.console_errors`."""
    contexts = []

    def _open(path: str, viewport: str = "desktop"):
        context = browser.new_context(viewport=VIEWPORTS[viewport], base_url=base_url)
        contexts.append(context)
        page = context.new_page()
        page.console_errors = []
        page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
        page.on("pageerror", lambda error: page.console_errors.append(str(error)))
        page.on("response", lambda response: response.status >= 400 and page.console_errors.append(
            f"{response.status} {response.url}"))
        page.goto(path, wait_until="networkidle")
        return page

    yield _open
    for context in contexts:
        context.close()


#: Screenshots taken by the running test, attached to its report entry by `pytest_runtest_makereport`.
_SCREENSHOTS: list[Path] = []


def save_screenshot(page, name: str) -> Path:
    """A full-page PNG in the artifacts folder, also shown in the HTML report beside the test that took it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    _SCREENSHOTS.append(path)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    """Embed the screenshots taken during this phase in pytest-html's report (base64: one self-contained file)."""
    outcome = yield
    if not _SCREENSHOTS:
        return
    from pytest_html import extras

    report = outcome.get_result()
    report.extras = getattr(report, "extras", []) + [
        extras.png(base64.b64encode(path.read_bytes()).decode(), name=path.stem) for path in _SCREENSHOTS]
    _SCREENSHOTS.clear()


@pytest.fixture(scope="session")
def api_key(base_url: str) -> str:
    """An API key for the app under test: `LOCKN_QA_KEY`, or one made with the admin CLI for a local app."""
    if os.environ.get("LOCKN_QA_KEY"):
        return os.environ["LOCKN_QA_KEY"]
    if external_target():
        pytest.skip("LOCKN_QA_KEY is not set: the API checks against an external LockN need a key with "
                    "tts:read,tts:write,keys:read (python -m backend.ops.cli keys create …)")
    env = {**os.environ, **APP_ENV}
    created = subprocess.run([sys.executable, "-m", "backend.ops.cli", "keys", "create", "--owner", "qa|release-gate",
                              "--name", "qa", "--scopes", "tts:read,tts:write,keys:read", "--json"],
                             cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(created.stdout)["key"]
