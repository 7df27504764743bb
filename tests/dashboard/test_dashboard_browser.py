"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a seeded store
served by the gateway: every page as an admin and as a consumer, the seeded data in tables and
charts, promote, roll back and revoke with their audit events, and no console error or failed
request anywhere. Screenshots of each page go to ``tests/artifacts/ui/``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.dashboard.seed import HISTORY_HOURS, HISTORY_PER_HOUR, Seeded
from tests.servers import serving

from llmops.dashboard import mount_dashboard
from llmops.gateway.app import create_app
from llmops.gateway.config import GatewayConfig

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "ui"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]


class Watched:
    """A page whose console errors, uncaught exceptions and failed requests are collected."""

    def __init__(self, page: Any, base: str) -> None:
        self.page, self.base, self.problems = page, base, []
        self.allowed: set[str] = set()
        page.set_default_timeout(10_000)
        page.on("console", lambda m: m.type == "error" and self._problem(f"console: {m.text}"))
        page.on("pageerror", lambda e: self._problem(f"page error: {e}"))
        page.on("requestfailed", lambda r: self._problem(f"failed: {r.url} {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self._problem(f"{r.status}: {r.url}"))

    def _problem(self, text: str) -> None:
        if not any(allowed in text for allowed in self.allowed):
            self.problems.append(text)

    def visit(self, path: str, shot: str | None = None, *, status: int = 200) -> Any:
        response = self.page.goto(self.base + path, wait_until="networkidle")
        assert response is not None and response.status == status, (path, response and response.status)
        if shot:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
        return response

    def text(self, selector: str) -> str:
        return str(self.page.locator(selector).first.inner_text())

    def check(self) -> None:
        assert self.problems == [], self.problems


@pytest.fixture(scope="module")
def base_url(seeded: Seeded) -> Iterator[str]:
    app = create_app(
        GatewayConfig.model_validate({"deployments": []}), seeded.home, active_health_checks=False
    )
    mount_dashboard(app)
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


def _logged_in(browser: Any, base_url: str, key: str) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    watched = Watched(context.new_page(), base_url)
    watched.visit("/ui/")  # sent to the login form
    assert "/ui/login" in watched.page.url
    watched.page.fill('input[name="key"]', key)
    watched.page.click('button:has-text("Log in")')
    watched.page.wait_for_url(re.compile(r".*/ui/$"))
    watched.page.wait_for_load_state("networkidle")
    yield watched
    context.close()


@pytest.fixture
def admin(browser: Any, base_url: str, seeded: Seeded) -> Iterator[Watched]:
    yield from _logged_in(browser, base_url, seeded.keys["admin"])


@pytest.fixture
def consumer(browser: Any, base_url: str, seeded: Seeded) -> Iterator[Watched]:
    yield from _logged_in(browser, base_url, seeded.keys["consumer"])


def _rows(watched: Watched, table: str) -> int:
    return int(watched.page.locator(f"{table} tbody tr").count())


def test_every_page_as_an_admin_shows_the_seeded_store(admin: Watched, seeded: Seeded) -> None:
    admin.visit("/ui/", "overview")
    total = 60 + 2 + HISTORY_HOURS * HISTORY_PER_HOUR  # the rollout's, the two seeded, the day before
    assert int(admin.text('[data-metric="requests"]').replace(",", "")) == total
    assert int(admin.text('[data-metric="errors"]').split()[0]) == sum(
        h % 3 for h in range(1, HISTORY_HOURS + 1)
    )
    assert "bot@2" in admin.text("#versions") and "bot@1" in admin.text("#versions")
    assert all(
        int(n) > 0
        for n in admin.page.locator("figure.chart svg").evaluate_all("s => s.map(e => e.dataset.points)")
    )
    admin.visit("/ui/models", "models")
    assert "production → 1" in admin.text("#models")
    admin.visit("/ui/models/bot", "model")
    assert _rows(admin, "#versions") == 2 and "passed" in admin.text("#versions")
    admin.visit("/ui/models/bot/2", "model-version")
    assert "bot@2" in admin.text("#lineage") and "acc" in admin.text("#gates")
    admin.visit("/ui/runs", "runs")
    assert "fine-tune" in admin.text("#runs") and "loss 0.15" in admin.text(
        "#runs"
    )  # 3 / 20 at the last step
    admin.visit(f"/ui/runs/{seeded.train_run_id}", "run")
    assert (
        int(admin.page.locator("figure.chart svg").first.get_attribute("data-points")) == 20
    )  # the loss curve
    admin.visit("/ui/evals", "evals")
    assert _rows(admin, "#evals") == 2 and "qa" in admin.text("#evals") and "bot@2" in admin.text("#evals")
    assert "exact_match 0.75" in admin.text("#evals") and "passed" in admin.text(
        "#evals"
    )  # both pass min 0.5
    admin.visit(f"/ui/evals/{seeded.eval_run_ids[1]}", "evaluation")
    assert "exact_match" in admin.text("#scores") and "bot@1" in admin.text("main")  # champion named
    comparison = admin.text("#comparison")  # challenger right on 30 of 40, champion on 36 of 40
    assert "0.75" in comparison and "0.9" in comparison and "-0.15" in comparison
    admin.page.select_option('select[name="only"]', "worse")  # htmx swaps the example table
    admin.page.wait_for_url(re.compile(r".*only=worse.*"))
    admin.page.wait_for_load_state("networkidle")
    assert "better" not in admin.text("#examples tbody") and "worse" in admin.text("#examples tbody")
    admin.visit("/ui/deployments", "deployments")
    assert "canary" in admin.text("#rollouts")
    admin.visit(f"/ui/rollouts/{seeded.rollout_id}", "rollout")
    assert "error_rate_increase" in admin.text("#timeline")
    admin.visit("/ui/monitoring", "monitoring")
    assert "0.7" in admin.text("#online-eval") and "0.8" in admin.text("#online-eval")
    assert "drifted" in admin.text("#drift") and "prompt_length" in admin.text("#drift")
    assert int(admin.page.locator("figure.chart svg").first.get_attribute("data-points")) == 2
    admin.visit("/ui/requests", "requests")
    assert _rows(admin, "#requests") == 50 and "older" in admin.text(".pager")
    admin.visit(f"/ui/requests/{seeded.xss_request_id}", "request")
    assert "<script>window.__xss = 1</script>" in admin.text("#prompt")  # shown as text, not run
    assert admin.page.evaluate("window.__xss === undefined")
    admin.visit("/ui/keys", "keys")
    assert "consumer key" in admin.text("#keys") and "5.00" in admin.text("#keys")  # spend against budget
    admin.visit("/ui/audit", "audit")
    assert "verified" in admin.text("#chain") and "rollout.canary" in admin.text("#audit")
    admin.visit("/ui/pipelines", "pipelines")
    assert "succeeded" in admin.text("#runs")
    admin.visit("/ui/loop", "loop")
    assert "stopped" in admin.text("#runs")
    admin.check()


def test_requests_filter_and_page_on_the_server_through_htmx(admin: Watched, seeded: Seeded) -> None:
    admin.visit("/ui/requests")
    first_page = admin.text("#requests tbody")
    last_shown = admin.page.locator("#requests tbody tr").last.locator("td a").inner_text()
    admin.page.click('a[rel="next"]')
    admin.page.wait_for_url(re.compile(r".*before=req-.*"))
    admin.page.wait_for_load_state("networkidle")
    assert _rows(admin, "#requests") == 50 and admin.page.locator('a[rel="first"]').count() == 1
    second_page = admin.text("#requests tbody")
    assert last_shown not in second_page and second_page != first_page  # the page after, no overlap
    admin.page.fill('input[name="version"]', "bot@2")
    admin.page.fill('input[name="status"]', "200")
    admin.page.click('button:has-text("Search")')
    admin.page.wait_for_url(re.compile(r".*version=bot%402.*"))
    admin.page.wait_for_load_state("networkidle")
    assert _rows(admin, "#requests") == 30
    admin.check()


def test_promote_and_rollback_buttons_queue_signals_with_audit_events(admin: Watched, seeded: Seeded) -> None:
    for button, signal in (("Promote now", "promote"), ("Roll back", "rollback")):
        admin.visit(f"/ui/rollouts/{seeded.rollout_id}")
        admin.page.fill('#steer input[name="reason"]', f"{signal} from the browser test")
        admin.page.click(f'#steer button:has-text("{button}")')
        admin.page.wait_for_url(re.compile(rf".*done={signal}"))
        admin.page.wait_for_load_state("networkidle")
        assert f"{signal} queued" in admin.text(".notice")
        admin.visit("/ui/audit?action=rollout.signal", f"audit-{signal}")
        assert f"{signal} from the browser test" in admin.text("#audit")
        assert f"key:{seeded.key_ids['admin']}" in admin.text("#audit")
    admin.check()


def test_create_and_revoke_a_key_with_its_audit_event(admin: Watched) -> None:
    admin.visit("/ui/keys")
    admin.page.fill('#create-key input[name="name"]', "browser-made")
    admin.page.fill('#create-key input[name="budget_usd"]', "2.5")
    admin.page.click('#create-key button:has-text("Create key")')
    assert admin.text("#created-key pre").startswith("sk-llmops-")
    row = admin.page.locator("#keys tr", has_text="browser-made")
    key_id = row.get_attribute("data-key")
    row.locator('button:has-text("Revoke")').click()
    admin.page.wait_for_url(re.compile(r".*/ui/keys$"))
    admin.page.wait_for_load_state("networkidle")
    assert "revoked" in admin.page.locator("#keys tr", has_text="browser-made").inner_text()
    admin.visit("/ui/audit?action=key.")
    audit = admin.text("#audit")
    assert f"key:{key_id}" in audit and "key.revoke" in audit and "key.create" in audit
    admin.check()


def test_every_page_as_a_consumer_shows_only_its_own_and_refuses_the_rest(
    consumer: Watched, seeded: Seeded
) -> None:
    consumer.visit("/ui/", "consumer-overview")
    assert consumer.text('[data-metric="requests"]') == "1"
    assert [a.strip() for a in consumer.page.locator("header nav a").all_inner_texts()] == [
        "Overview",
        "Requests",
    ]
    consumer.visit("/ui/requests", "consumer-requests")
    assert _rows(consumer, "#requests") == 1 and seeded.xss_request_id[:14] in consumer.text("#requests")
    consumer.visit(f"/ui/requests/{seeded.xss_request_id}", "consumer-request")
    assert "redacted" in consumer.text("#prompt")
    refused = [
        "/ui/models",
        "/ui/runs",
        "/ui/evals",
        "/ui/monitoring",
        "/ui/deployments",
        "/ui/keys",
        "/ui/audit",
        "/ui/pipelines",
    ]
    for path in [*refused, "/ui/loop", f"/ui/rollouts/{seeded.rollout_id}"]:
        consumer.allowed = {"403", "status of 403"}  # the refusal itself, expected
        consumer.visit(path, status=403)
        assert "needs the" in consumer.text(".alert")
    consumer.allowed = {"404", "status of 404"}
    consumer.visit(f"/ui/requests/{seeded.other_request_id}", status=404)
    consumer.allowed = set()
    consumer.check()
