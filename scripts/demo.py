"""The llmops demo: the whole story on embedded defaults (SQLite, local files, in-process engine).

Every step runs a real `llmops` command against a fresh home in `.llmops/demo`, printed before it
runs, so what you see is what a user would type. The first half makes the support-desk model through
its pipeline and serves it through the supervisor and the gateway; the second half (demo_loop.py)
shifts the traffic and lets the maintenance loop answer by itself.
"""

from __future__ import annotations

import shutil
import time
import urllib.request

from demo_common import ENV, EXAMPLE, HOME, background, free_port, llmops, new_key, rows_of, step
from demo_loop import story
from demo_users import Users

PIPELINE = EXAMPLE / "llmops.yaml"
DEPLOYMENT = EXAMPLE / "deployment.yaml"
STEPS = 120

GATEWAY_CONFIG = """\
port: {port}
allow_loopback_upstreams: true
admin_sync_s: 1
deployments: []
monitor:
  drift_window_size: 200
  drift_interval_s: 5
  reference_sync_s: 1
  alert_interval_s: 2
  alert_rules:
    rules:
      - name: prompt-drift
        metric: llmops_drift_detected
        match: {{feature: overall}}
        op: ">="
        threshold: 1
        for: 4s
        labels: {{severity: warning}}
        annotations: {{summary: live prompts drifted from the reference}}
"""


def show_metrics(url: str, key: str, prefixes: tuple[str, ...]) -> None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(prefixes):
            print(f"  {line}")


def ask_with_openai(base_url: str, key: str, prompts: list[str]) -> None:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=key)
    for prompt in prompts:
        answer = client.completions.create(model="demo-intent", prompt=prompt, max_tokens=24, temperature=0)
        print(f"  {prompt!r} -> {answer.choices[0].text!r} ({answer.usage.total_tokens} tokens)")
    try:
        openai.OpenAI(base_url=base_url, api_key="sk-llmops-not-a-key").models.list()
    except openai.AuthenticationError as exc:
        print(f"  a wrong key gets {exc.status_code}: {exc.message}")


def everyday_traffic(gateway: str, users: Users, developer: str) -> None:
    step("7. Users with feedback: everyday support messages, rated by the people who sent them")
    ask_with_openai(f"{gateway}/v1", users.key, [r["prompt"] for r in rows_of("intent-clean-test", 3)])
    llmops("data", "synth", "intent", "--name", "traffic-default", "--n", "400", "--seed", "21", quiet=True)
    users.for_a_while(rows_of("traffic-default"), seconds=15, per_second=4.0)
    seen = users.tallies["default"]
    print(f"  users got the reply they wanted {seen.right}/{seen.asked} times ({seen.rated} rated it)")
    time.sleep(1)  # the request log is written in batches
    llmops("monitor", "drift", "--version", "demo-intent@production", "--since", "10m", expect=(0, 1))
    print("  live gateway metrics:")
    show_metrics(
        f"{gateway}/metrics",
        developer,
        ("llmops_gateway_requests_total", "llmops_feedback_total", "llmops_drift_detected"),
    )


def serve_and_maintain() -> None:
    """The gateway starts empty; `llmops deploy apply` starts the replica, waits until it is ready and
    registers it with the gateway, which picks the deployment up from the store. Then the users come."""
    step("6. Serve the production version through the supervisor and the gateway")
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    config = HOME / "gateway.yaml"
    config.write_text(GATEWAY_CONFIG.format(port=port))
    consumer = new_key("demo-app", "consumer")
    developer = new_key("demo-ops", "developer")
    deployer = new_key("demo-deployer", "deployer")
    # the loop's rollout drives the same supervisor; these let it start one again if it died
    ENV.update({"LLMOPS_GATEWAY_URL": gateway, "LLMOPS_GATEWAY_KEY": deployer})
    with background("gateway", "serve", "--config", str(config), ready=f"{gateway}/readyz"):
        print(f"  dashboard: {gateway}/ui/  (log in with the deployer key {deployer})", flush=True)
        access = ("--gateway", gateway, "--gateway-key", deployer)
        llmops("deploy", "apply", str(DEPLOYMENT), *access)
        try:
            reference = ("--dataset", "intent-clean-train@1", "--reason", "the prompts it learned")
            llmops("monitor", "reference", "--version", "demo-intent@production", *reference)
            users = Users(gateway, consumer, "demo-intent", seed=0)
            everyday_traffic(gateway, users, developer)
            story(users)
        finally:
            llmops("deploy", "delete", "demo-intent", *access)


def score_line(report: str, metric: str) -> str:
    return next((line for line in report.splitlines() if f"`{metric}`" in line), "(missing)")


def main() -> None:
    started = time.monotonic()
    shutil.rmtree(HOME, ignore_errors=True)
    step("1. Create the embedded home (SQLite + artifact store) and migrate it")
    llmops("init")

    step("2-4. The support-desk pipeline: data, training, evaluation, gate and registration from one file")
    pipeline = str(PIPELINE)
    reports = HOME / "reports"
    run = ("pipeline", "run", pipeline, "--stage", "register", "--reports", str(reports),
           "-p", f"gate.summary={reports / 'gate.md'}")  # fmt: skip
    llmops("pipeline", "dag", pipeline)
    print(f"  {STEPS} training steps instead of the file's 300, to leave time for the rest of the story")
    llmops(*run, "-p", f"max_steps={STEPS}")
    print("  run again, nothing changed: every stage is skipped, and says why")
    llmops(*run, "-p", f"max_steps={STEPS}")
    # the pipeline moves `staging`; a first release has nothing serving to roll out from, so it is set
    # by hand (later versions reach production through the rollout controller)
    llmops("models", "alias", "set", "demo-intent", "production", "1", "--reason", "first release")
    gate = (HOME / "reports" / "pipeline.md").read_text()  # with every gate summary
    print("held-out exact match: " + score_line(gate, "exact_match"))
    # The suite's own gate (no regression against production) had no production to compare with at
    # the first release, so the version carries a failed `gates/intent`; deploy refuses such versions.
    # Evaluating the released version on the suite stores the result the gate compares with.
    llmops("eval", "run", str(EXAMPLE / "suites" / "held-out.yaml"), "--model", "demo-intent@production")

    step("5. Registry: the version and its lineage (`llmops models card` writes its model card)")
    llmops("models", "show", "demo-intent@production")
    llmops("models", "lineage", "demo-intent@production")

    serve_and_maintain()

    step("13. The audit log records every change and verifies its hash chain")
    llmops("audit", "verify")
    print(f"\nthe whole story took {(time.monotonic() - started) / 60:.1f} minutes")
    print("look back over it in the dashboard: .venv/bin/llmops --home .llmops/demo ui")
    print("  log in with the key that this prints:")
    print("  .venv/bin/llmops --home .llmops/demo keys create --name me --role admin")


if __name__ == "__main__":
    main()
