"""The dashboard's security through the gateway's ASGI app: login and sessions, roles and tenants,
escaping of planted markup, CSRF on every state-changing form, and the security headers."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from tests.dashboard.conftest import Login, login_client
from tests.dashboard.seed import IMG, SCRIPT, Seeded

from llmops.dashboard.headers import CONTENT_SECURITY_POLICY
from llmops.dashboard.queries.requests import REDACTED
from llmops.dashboard.session import SESSION_COOKIE, SessionSigner
from llmops.data.versions import DatasetStore
from llmops.deploy.rollout_state import ROLLOUT_MACHINE
from llmops.errors import InvalidInput
from llmops.registry.client import Registry
from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.store.lifecycle import Lifecycle
from llmops.store.schema import AuditEvent

STAFF_PAGES = ["/ui/models", "/ui/models/bot", "/ui/models/bot/2", "/ui/runs", "/ui/evals", "/ui/deployments",
               "/ui/monitoring", "/ui/pipelines", "/ui/loop"]  # fmt: skip
ADMIN_PAGES = ["/ui/keys", "/ui/audit"]


def _events(seeded: Seeded, action: str) -> int:
    with seeded.home.store.read() as session:
        return int(session.execute(select(func.count()).where(AuditEvent.action == action)).scalar_one())


def _is_login_page(response) -> bool:  # type: ignore[no-untyped-def]
    return (
        response.status_code in (200, 401)
        and 'name="key"' in response.text
        and "Traceback" not in response.text
    )


# ---- login and sessions -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ui/", "/ui/requests", "/ui/keys", "/ui/rollouts/x", "/ui/nothing-here"])
def test_without_a_session_every_page_is_the_login_page(gateway_client: TestClient, path: str) -> None:
    response = gateway_client.get(path)
    assert _is_login_page(response) or response.status_code == 404
    if response.status_code != 404:
        assert response.url.path == "/ui/login"


def test_a_wrong_key_gets_the_login_page_again_and_no_session(
    gateway_client: TestClient, seeded: Seeded
) -> None:
    gateway_client.get("/ui/login")
    for key in ("sk-llmops-" + "x" * 43, "not a key at all", ""):
        token = gateway_client.cookies.get("llmops_login")  # each form comes with a fresh token
        response = gateway_client.post("/ui/login", data={"key": key, "csrf": token}, follow_redirects=False)
        assert response.status_code == 401 and _is_login_page(response)
        assert "not a valid, active API key" in response.text
        assert not key or key not in response.text  # the key is never echoed
        assert SESSION_COOKIE not in response.cookies
    assert gateway_client.get("/ui/").url.path == "/ui/login"


def test_the_login_form_needs_its_own_token(gateway_client: TestClient, seeded: Seeded) -> None:
    response = gateway_client.post("/ui/login", data={"key": seeded.keys["admin"]}, follow_redirects=False)
    assert response.status_code == 403 and SESSION_COOKIE not in response.cookies


def test_the_session_cookie_is_httponly_strict_and_short_lived(
    gateway_client: TestClient, seeded: Seeded
) -> None:
    gateway_client.get("/ui/login")
    token = gateway_client.cookies.get("llmops_login")
    response = gateway_client.post(
        "/ui/login", data={"key": seeded.keys["admin"], "csrf": token}, follow_redirects=False
    )
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    assert (
        "HttpOnly" in cookie
        and "SameSite=strict" in cookie
        and "Path=/ui" in cookie
        and "Max-Age=1800" in cookie
    )
    assert seeded.keys["admin"] not in cookie  # the key itself never goes to the browser


def test_an_expired_or_forged_session_goes_to_the_login_page(
    gateway_client: TestClient, seeded: Seeded
) -> None:
    signer = SessionSigner(seeded.home.settings.secret_value(), ttl_s=60)
    expired, _ = signer.issue(seeded.key_ids["admin"], now=time.time() - 3600)
    forged, _ = SessionSigner(b"another secret", ttl_s=60).issue(seeded.key_ids["admin"])
    valid, _ = signer.issue(seeded.key_ids["admin"])
    tampered = valid.replace(seeded.key_ids["admin"], seeded.key_ids["consumer"])
    for cookie in (expired, forged, tampered, "garbage"):
        gateway_client.cookies.set(SESSION_COOKIE, cookie, path="/ui")
        response = gateway_client.get("/ui/keys")
        assert response.url.path == "/ui/login" and _is_login_page(response)
    gateway_client.cookies.set(SESSION_COOKIE, valid, path="/ui")
    assert gateway_client.get("/ui/keys").status_code == 200


def test_a_revoked_key_ends_its_sessions_at_once(gateway_client: TestClient, seeded: Seeded) -> None:
    keys = KeyStore.from_home(seeded.home)
    created = keys.create(KeySpec(name="short-lived admin", role=Role.ADMIN))
    login_client(gateway_client, created.key)
    assert gateway_client.get("/ui/audit").status_code == 200
    keys.revoke(created.record.id, "test")
    assert gateway_client.get("/ui/audit").url.path == "/ui/login"


def test_after_login_only_dashboard_paths_are_followed(gateway_client: TestClient, seeded: Seeded) -> None:
    for target in ("//evil.example/ui/", "https://evil.example/", "/v1/models"):
        gateway_client.cookies.clear()
        gateway_client.get("/ui/login")
        token = gateway_client.cookies.get("llmops_login")
        response = gateway_client.post(
            "/ui/login",
            data={"key": seeded.keys["admin"], "csrf": token, "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/ui/"


# ---- roles and tenants --------------------------------------------------------------------------


@pytest.mark.parametrize("path", STAFF_PAGES + ADMIN_PAGES)
def test_a_consumer_gets_403_on_every_page_above_its_role(login: Login, path: str) -> None:
    response = login("consumer").get(path)
    assert response.status_code == 403 and "needs the" in response.text
    assert "bot@2" not in response.text and "<table" not in response.text


def test_a_developer_gets_403_on_admin_pages_and_the_nav_hides_them(login: Login) -> None:
    client = login("developer")
    for path in ADMIN_PAGES:
        assert client.get(path).status_code == 403
    assert client.get("/ui/models").status_code == 200
    overview = client.get("/ui/").text
    assert 'href="/ui/models"' in overview and 'href="/ui/keys"' not in overview


def test_a_consumer_sees_only_its_own_requests(login: Login, seeded: Seeded) -> None:
    client = login("consumer")
    listing = client.get("/ui/requests").text
    assert seeded.xss_request_id[:14] in listing and seeded.other_request_id[:14] not in listing
    assert (
        "req-" in listing and listing.count('href="/ui/requests/req-') == 1
    )  # not the rollout's traffic either
    # asking for another key's requests by filter or by id finds nothing
    filtered = client.get("/ui/requests", params={"key_id": seeded.key_ids["other"]}).text
    assert seeded.other_request_id[:14] not in filtered
    assert client.get(f"/ui/requests/{seeded.other_request_id}").status_code == 404
    assert client.get(f"/ui/requests/{seeded.xss_request_id}").status_code == 200
    # the overview counts its own traffic only (1 request), not the 60 of the rollout
    overview = client.get("/ui/").text
    assert 'data-metric="requests">1<' in overview


def test_payloads_are_shown_only_to_roles_allowed_to_read_them(login: Login, seeded: Seeded) -> None:
    path = f"/ui/requests/{seeded.xss_request_id}"
    developer = login("developer").get(path).text
    assert REDACTED in developer and "hello" not in developer
    assert "reply" not in developer
    admin = login("admin").get(path).text
    assert "hello" in admin and REDACTED not in admin
    # a role that may not read payloads may not search them either
    assert (
        "the other tenant" not in login("developer").get("/ui/requests", params={"text": "other tenant"}).text
    )


# ---- escaping -----------------------------------------------------------------------------------


def test_names_with_markup_are_refused_where_names_are_made(seeded: Seeded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):
        Registry.from_home(seeded.home).register(tmp_path, SCRIPT)
    with pytest.raises(InvalidInput):
        DatasetStore.from_home(seeded.home).commit(IMG, [{"text": "x"}], "text")


@pytest.mark.parametrize(
    "path",
    ["/ui/requests", "/ui/requests/{xss_request_id}", "/ui/runs", "/ui/runs/{train_run_id}",
     "/ui/evals/{eval}", "/ui/"],
)  # fmt: skip
def test_planted_markup_renders_as_text(login: Login, seeded: Seeded, path: str) -> None:
    url = path.format(
        xss_request_id=seeded.xss_request_id, train_run_id=seeded.train_run_id, eval=seeded.eval_run_ids[1]
    )
    html = login("admin").get(url).text
    assert SCRIPT not in html and IMG not in html and "<img" not in html
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html or "&lt;img src=x" in html


def test_the_request_detail_escapes_prompt_deployment_and_model_name(login: Login, seeded: Seeded) -> None:
    html = login("admin").get(f"/ui/requests/{seeded.xss_request_id}").text
    assert "hello &lt;script&gt;window.__xss = 1&lt;/script&gt;" in html  # the prompt
    assert "bot&#34;&gt;&lt;img src=x onerror=&#34;window.__xss = 2&#34;&gt;" in html  # the deployment
    assert "bot@1&lt;script&gt;" in html  # the model version the client named


# ---- CSRF ---------------------------------------------------------------------------------------


def test_state_changes_without_a_valid_csrf_token_are_refused_and_change_nothing(
    login: Login, seeded: Seeded
) -> None:
    target = KeyStore.from_home(seeded.home).create(KeySpec(name="to keep", role=Role.CONSUMER)).record
    client = login("admin")
    other_session = SessionSigner(seeded.home.settings.secret_value(), ttl_s=60)
    _, foreign = other_session.issue(seeded.key_ids["admin"])
    foreign_token = other_session.csrf_token(foreign)
    revokes, signals, creates = (
        _events(seeded, "key.revoke"),
        _events(seeded, "rollout.signal"),
        _events(seeded, "key.create"),
    )
    for data in ({}, {"csrf": ""}, {"csrf": "0" * 64}, {"csrf": foreign_token}):
        assert client.post(f"/ui/keys/{target.id}/revoke", data=data).status_code == 403
        assert client.post("/ui/keys", data={**data, "name": "sneaky", "role": "admin"}).status_code == 403
        rollout = client.post(
            f"/ui/rollouts/{seeded.rollout_id}/signal", data={**data, "action": "rollback", "reason": "x"}
        )
        assert rollout.status_code == 403
    assert KeyStore.from_home(seeded.home).get(target.id).state() == "active"
    assert Lifecycle(seeded.home.store, ROLLOUT_MACHINE).get(seeded.rollout_id).pending_signals == 0
    after = (_events(seeded, "key.revoke"), _events(seeded, "rollout.signal"), _events(seeded, "key.create"))
    assert after == (revokes, signals, creates)
    # a JSON body is not a form: refused as well
    assert client.post(f"/ui/keys/{target.id}/revoke", json={"csrf": "x"}).status_code == 403


def test_revoking_with_the_form_token_goes_through_the_key_store_and_its_audit(
    login: Login, seeded: Seeded
) -> None:
    target = KeyStore.from_home(seeded.home).create(KeySpec(name="to revoke", role=Role.CONSUMER)).record
    client = login("admin")
    page = client.get("/ui/keys").text
    token = page.split('name="csrf" value="')[1].split('"')[0]
    response = client.post(f"/ui/keys/{target.id}/revoke", data={"csrf": token})
    assert response.status_code == 200 and response.url.path == "/ui/keys"
    assert KeyStore.from_home(seeded.home).get(target.id).state() == "revoked"
    audit_page = client.get("/ui/audit", params={"action": "key.revoke"}).text
    assert f"key:{target.id}" in audit_page and f"key:{seeded.key_ids['admin']}" in audit_page


def test_only_deployers_may_steer_a_rollout(login: Login, seeded: Seeded) -> None:
    developer = login("developer")
    page = developer.get(f"/ui/rollouts/{seeded.rollout_id}").text
    assert 'id="steer"' not in page  # no buttons for a role that may not use them
    token = page.split('name="csrf" value="')[1].split('"')[0]
    response = developer.post(
        f"/ui/rollouts/{seeded.rollout_id}/signal", data={"csrf": token, "action": "promote", "reason": "r"}
    )
    assert response.status_code == 403
    assert Lifecycle(seeded.home.store, ROLLOUT_MACHINE).get(seeded.rollout_id).pending_signals == 0


def test_a_steer_without_a_reason_or_with_an_unknown_action_is_a_400(login: Login, seeded: Seeded) -> None:
    client = login("deployer")
    page = client.get(f"/ui/rollouts/{seeded.rollout_id}").text
    token = page.split('name="csrf" value="')[1].split('"')[0]
    url = f"/ui/rollouts/{seeded.rollout_id}/signal"
    missing = client.post(url, data={"csrf": token, "action": "promote", "reason": " "})
    assert missing.status_code == 400 and "give a reason" in missing.text
    unknown = client.post(url, data={"csrf": token, "action": "delete-everything", "reason": "r"})
    assert unknown.status_code == 400 and "promote, rollback" in unknown.text
    assert Lifecycle(seeded.home.store, ROLLOUT_MACHINE).get(seeded.rollout_id).pending_signals == 0


# ---- headers and bad input ----------------------------------------------------------------------


def test_pages_carry_the_strict_csp_and_the_api_keeps_its_own(
    login: Login, gateway_client: TestClient
) -> None:
    page = login("admin").get("/ui/")
    assert page.headers.get_list("content-security-policy") == [CONTENT_SECURITY_POLICY]
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY and "http" not in CONTENT_SECURITY_POLICY
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert 'src="/ui/static/htmx-2.0.11.min.js"' in page.text and "<script>" not in page.text
    assert 'style="' not in page.text and "<style" not in page.text
    api = gateway_client.get("/healthz")
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_bad_filters_are_a_400_page_naming_the_field(login: Login) -> None:
    client = login("admin")
    for params, field in (
        ({"status": "abc"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"until": "soon"}, "until"),
    ):
        response = client.get("/ui/requests", params=params)
        assert response.status_code == 400 and field in response.text and "Traceback" not in response.text
    assert client.get("/ui/", params={"window": "1y"}).status_code == 400
    assert client.get("/ui/models/bot/x").status_code == 400
    assert client.get("/ui/audit", params={"page": "0"}).status_code == 400
    assert client.get("/ui/models/nope").status_code == 404
    assert client.get("/ui/rollouts/nope").status_code == 404


def test_logging_out_needs_the_form_token_and_ends_the_session(login: Login) -> None:
    client = login("developer")
    assert client.post("/ui/logout", data={"csrf": "wrong"}).status_code == 403
    assert client.get("/ui/models").status_code == 200  # still logged in
    token = client.get("/ui/models").text.split('name="csrf" value="')[1].split('"')[0]
    response = client.post("/ui/logout", data={"csrf": token})
    assert response.url.path == "/ui/login" and _is_login_page(response)
    assert client.get("/ui/models").url.path == "/ui/login"
