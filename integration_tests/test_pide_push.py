"""Pi-DE's Web Push in Chromium (specs/push.md §4): subscribe, a push shown by the service worker, a click.

A real hypivisor serves the built Pi-DE; the agents are nodes registered over its real ``/ws`` that report
inbox causes with their heartbeats (RegisteredAgent). Headless Chromium has no push service, so the page's
``PushManager`` hands out a subscription of the local push service (``harness/push_stub.py``, which checks
VAPID and decrypts like FCM would); what the hypivisor sends there is then delivered to the page's real
service worker with DevTools' ``ServiceWorker.deliverPushMessage``, as the browser's push client would.
"""

from __future__ import annotations

import json
import time

import pytest

from integration_tests.harness.pide import dashboard_url, wait_until
from integration_tests.harness.push_stub import PushStub
from integration_tests.test_pi_attention import call
from integration_tests.test_pi_resilience import registry

pytestmark = [pytest.mark.browser]
QUIET = 1.0

# Chromium's headless push client cannot reach FCM: PushManager returns the push stub's subscription.
FAKE_PUSH_MANAGER = """
(() => {
  const SUB = %s;
  let current = null;
  PushManager.prototype.subscribe = async function (opts) {
    const key = opts.applicationServerKey;
    current = {
      endpoint: SUB.endpoint,
      expirationTime: null,
      options: { userVisibleOnly: true, applicationServerKey: key.buffer ? key.buffer : key },
      toJSON: () => SUB,
      unsubscribe: async () => { current = null; return true; },
    };
    return current;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
})();
"""

NOTIFICATIONS = (
    "navigator.serviceWorker.ready.then(r => r.getNotifications())"
    ".then(ns => ns.map(n => ({title: n.title, body: n.body, tag: n.tag, data: n.data})))"
)


def live(kind: str, key: str, summary: str, **extra) -> dict:
    return {"kind": kind, "key": key, "summary": summary, "created_at": time.time(), **extra}


@pytest.fixture
def stub():
    s = PushStub()
    yield s
    s.close()


def test_a_push_is_one_notification_per_agent_and_a_click_opens_that_agent(
    dash_hv, page_factory, agents, agent_client, stub
):
    hv = dash_hv
    dash = registry(agent_client, hv)
    stub.expected_key = call(dash, "push_config")["public_key"]
    pipeline = agents(hv, "node-pipeline", "/w/data-pipeline", session_name="data-pipeline")
    todo = agents(hv, "node-todo", "/w/todo-api")
    origin = hv.url("", dashboard=True)

    page = page_factory(viewport={"width": 1280, "height": 800})
    ctx = page.context
    ctx.grant_permissions(["notifications"], origin=origin)
    page.add_init_script(FAKE_PUSH_MANAGER % json.dumps(stub.subscription("chromium")))
    page.goto(dashboard_url(hv))
    assert page.evaluate("isSecureContext")  # http://127.0.0.1 is a secure context: no TLS needed here
    page.get_by_test_id("push-settings-toggle").click()
    page.get_by_test_id("push-enable").click()
    page.get_by_test_id("push-disable").wait_for()
    device = page.evaluate("localStorage.getItem('hyperpi.push.device')")
    assert call(dash, "push_config", device_id=device)["device"]["subscribed"]
    assert page.evaluate("navigator.serviceWorker.ready.then(r => r.active.scriptURL)") == f"{origin}/sw.js"
    manifest = page.evaluate("fetch('/manifest.webmanifest').then(r => r.json())")
    assert manifest["display"] == "standalone" and {i["sizes"] for i in manifest["icons"]} >= {"192x192", "512x512"}

    # the offline shell: once the service worker controls the page, a reload without the network still opens Pi-DE
    page.reload()
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    page.get_by_test_id("push-settings-toggle").wait_for()
    ctx.set_offline(True)
    page.reload()
    # the app starts from the cache (and says it cannot reach the hypivisor)
    page.wait_for_function("!navigator.onLine && document.getElementById('root').children.length > 0")
    ctx.set_offline(False)
    page.reload()
    page.get_by_test_id("push-settings-toggle").click()
    page.get_by_test_id("push-disable").wait_for()  # still subscribed after the reloads

    cdp = ctx.new_cdp_session(page)
    registrations: list[dict] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda ev: registrations.extend(ev["registrations"]))
    cdp.send("ServiceWorker.enable")

    def registration_id() -> str | None:
        page.wait_for_timeout(50)  # the sync API hands over CDP events only while it runs
        return next((r["registrationId"] for r in registrations if not r.get("isDeleted")), None)

    reg_id = wait_until(registration_id, what="the service worker's registration id")

    def deliver(n: int) -> dict:
        """The n-th push the stub received (decrypted), handed to the service worker like a push client."""
        wait_until(lambda: len(stub.to("chromium")) >= n, what=f"push {n} at the push service")
        payload = stub.to("chromium")[n - 1].payload
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": origin, "registrationId": reg_id, "data": json.dumps(payload)},
        )
        return payload

    # the page shows the roster: an approval in data-pipeline notifies, then its run's end replaces it
    pipeline.update(attention={"live": [live("approval", "ap1", "bash `rm -rf build`", approval_id="ap1")]})
    first = deliver(1)
    shown = wait_until(lambda: page.evaluate(NOTIFICATIONS), what="the notification")
    assert [(n["title"], n["body"]) for n in shown] == [("data-pipeline needs approval", "bash `rm -rf build`")]
    assert shown[0]["tag"] == first["tag"] and shown[0]["data"]["url"] == "#/agent/node-pipeline"
    run = {"key": "r1", "outcome": "finished", "summary": "Tests pass (3 files changed)", "at": time.time()}
    pipeline.update(attention={"live": [], "last_run": run})
    deliver(2)
    wait_until(lambda: page.evaluate(NOTIFICATIONS)[0]["body"] == "Tests pass (3 files changed)", what="update")
    assert [(n["title"], n["body"]) for n in page.evaluate(NOTIFICATIONS)] == [
        ("data-pipeline finished", "Tests pass (3 files changed)")
    ], "a second notice of the same agent must replace the first, not stack"

    # a click on it opens that agent in the open page, and the notification goes
    [worker] = ctx.service_workers
    worker.evaluate(
        "self.registration.getNotifications().then(ns => "
        "self.dispatchEvent(new NotificationEvent('notificationclick', {notification: ns[0]})))"
    )
    page.wait_for_function("location.hash === '#/agent/node-pipeline'")
    wait_until(lambda: page.evaluate(NOTIFICATIONS) == [], what="the clicked notification to close")

    # this page now shows data-pipeline, focused and visible: its next item is not pushed here; todo-api's is
    assert page.evaluate("document.hasFocus() && document.visibilityState === 'visible'")
    time.sleep(0.3)  # the presence report is one request on the open /ws
    pipeline.update(attention={"live": [live("approval", "ap2", "bash `make deploy`", approval_id="ap2")]})
    todo.update(attention={"live": [live("approval", "ap3", "bash `git push`", approval_id="ap3")]})
    wait_until(lambda: len(stub.to("chromium")) >= 3, what="todo-api's push")
    time.sleep(QUIET)
    assert [f"{r.payload['title']}: {r.payload['body']}" for r in stub.to("chromium")] == [
        "data-pipeline needs approval: bash `rm -rf build`",
        "data-pipeline finished: Tests pass (3 files changed)",
        "todo-api needs approval: bash `git push`",
    ]
    assert stub.errors == []

    # per-kind switch: approvals off on this device, then nothing more for approvals
    page.get_by_test_id("push-kind-approval").click()  # controlled: it unchecks when the hypivisor has it
    switch = page.get_by_test_id("push-kind-approval")
    wait_until(lambda: not switch.is_checked(), what="the switch to show off")
    assert "approval" not in call(dash, "push_config", device_id=device)["device"]["kinds"]
    todo.update(attention={"live": [live("approval", "ap4", "bash `ls`", approval_id="ap4")]})
    time.sleep(QUIET)
    assert len(stub.to("chromium")) == 3

    # per-agent mute: todo-api's finished run is not pushed here any more
    page.get_by_test_id("push-mute-node-todo").click()
    wait_until(lambda: page.get_by_test_id("push-mute-node-todo").is_checked(), what="todo-api muted")
    todo.update(attention={"live": [], "last_run": {**run, "key": "r9", "summary": "done"}})
    time.sleep(QUIET)
    assert len(stub.to("chromium")) == 3
