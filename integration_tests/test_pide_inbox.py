"""Pi-DE's inbox in Chromium (specs/attention.md, "Pi-DE inbox").

* Agents registered over the hypivisor's real ``/ws`` (RegisteredAgent) report attention exactly as a bridge
  does (with a heartbeat), so every kind of item shows on demand: two pages see the same items, dismiss and
  mark all read on one clear the other, Allow from the inbox sends the decision on that agent's link without
  opening it, the count is in the title and on the favicon, a phone lands on the inbox. Screenshots.
* Real pi agents on the fake LLM (the real bridge and shim): a finished run and an approval each make one
  item on two pages; Allow from the inbox runs the call; opening the agent on one page reads it on the other;
  a failed run's item is dismissed.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from integration_tests.harness.pide import dashboard_url, wait_until

pytestmark = [pytest.mark.browser]

REPO = Path(__file__).resolve().parents[1]
IMG = REPO / "test-artifacts"  # looked at, then copied by hand to specs/img/ (a test never edits the repo)
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}
PI = "0.73.1"
RUN_MS = 30_000


def item(page, kind, node_id=None):
    sel = f"[data-testid=inbox] [data-testid=inbox-item][data-kind={kind}]"
    return page.locator(sel + (f"[data-agent-id='{node_id}']" if node_id else ""))


def card(page, node_id):
    return page.locator(f"[data-node-id='{node_id}'][data-testid=node-card]")


def title(page) -> str:
    return page.evaluate("document.title")


def live(kind, key, summary, ago=60, **extra):
    return {"kind": kind, "key": key, "summary": summary, "created_at": time.time() - ago, **extra}


def last_run(key, outcome, summary, ago=30, new_messages=1):
    return {"key": key, "outcome": outcome, "summary": summary, "at": time.time() - ago, "new_messages": new_messages}


def rpc(hv, method, params):
    """One registry request on its own connection (as another dashboard would make it)."""
    from websockets.sync.client import connect

    with connect(hv.ws_url, additional_headers=hv.auth_headers, max_size=None, open_timeout=10) as ws:
        ws.send(json.dumps({"id": "q", "method": method, "params": params}))
        deadline = time.monotonic() + 10
        while True:
            f = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if f.get("id") == "q":
                assert "result" in f, f
                return f["result"]


def decisions(agent) -> list[dict]:
    return [f for f in agent.received if f.get("type") == "approval_decision"]


def with_pending(agent, *approval_ids):
    """The agent's init_state lists these approvals as open (as the bridge's does)."""
    base = type(agent).init_state

    def init_state():
        return {**base(agent), "pending_approvals": [{"type": "approval_request", "id": i} for i in approval_ids]}

    agent.init_state = init_state


def test_inbox_two_pages_allow_dismiss_mark_all_read_title_favicon_and_phone(dash_hv, agents, page_factory):
    api = agents(dash_hv, "n-api", "/srv/projects/api", session_name="fix login", machine="laptop")
    docs = agents(dash_hv, "n-docs", "/srv/projects/docs", machine="buildbox")
    web = agents(dash_hv, "n-web", "/srv/projects/web", session_name="<b>bold</b> **name**", machine="buildbox")
    first = page_factory(viewport=DESKTOP)
    second = page_factory(viewport=DESKTOP)
    first.goto(dashboard_url(dash_hv) + "#/inbox")
    second.goto(dashboard_url(dash_hv))
    first.wait_for_selector("[data-testid=inbox-empty]")
    assert "appear here" in first.get_by_test_id("inbox-empty").inner_text()
    assert title(first) == "Pi-DE"

    api.update(
        attention={
            "live": [live("approval", "ap-1", "bash `touch made.txt`", approval_id="ap-1", tool_name="bash")],
            "last_run": last_run("r1", "finished", "Done: the login form validates e-mail now", new_messages=3),
        }
    )
    docs.update(attention={"live": [], "last_run": last_run("r1", "error", "HTTP 500 from the model", ago=200)})
    web.update(
        attention={
            "live": [live("question", "dlg-1", "Overwrite <script>alert(1)</script> **config**?", ago=400)],
            "last_run": last_run("r1", "finished", "Tests pass", ago=900, new_messages=1),
        }
    )
    with_pending(api, "ap-1")

    # the header shows the count on every page; the second page opens the inbox from it
    second.wait_for_selector("[data-testid=inbox-link] >> text=5")
    second.get_by_test_id("inbox-link").click()
    for p in (first, second):
        p.wait_for_selector("[data-testid=inbox] [data-testid=inbox-item] >> nth=4")
        assert p.get_by_test_id("inbox-item").count() == 5
        # approvals, questions and errors first, newest first; then the rest
        kinds = [p.get_by_test_id("inbox-item").nth(i).get_attribute("data-kind") for i in range(5)]
        assert kinds == ["approval", "error", "question", "finished", "finished"], kinds
        wait_until(lambda p=p: title(p).startswith("(5) "), 5, what="the count in the title")
        p.wait_for_function("() => document.querySelector('link[rel=icon]').href.startsWith('data:image/png')")
        assert p.locator("link[rel=icon]").count() == 1
        # unread counts on the roster cards
        p.wait_for_selector("[data-node-id='n-api'] [data-testid=unread-badge] >> text=3 new")
    # names, machines (several), folders and summaries are plain text
    q = item(first, "question").inner_text()
    assert "<script>alert(1)</script> **config**" in q and "<b>bold</b> **name**" in q and "buildbox" in q
    assert first.locator("[data-testid=inbox] script, [data-testid=inbox] b").count() == 0
    assert "docs" in item(first, "error").inner_text() and "/srv/projects/docs" in item(first, "error").inner_text()
    IMG.mkdir(exist_ok=True)
    first.screenshot(path=str(IMG / "pide-inbox-desktop.png"))

    # Allow from the inbox: the decision goes on that agent's link, without opening its conversation
    item(first, "approval").get_by_test_id("inbox-allow").click()
    wait_until(lambda: decisions(api), 5, what="the allow decision")
    assert decisions(api) == [{"type": "approval_decision", "id": "ap-1", "decision": "allow"}]
    assert "#/inbox" in first.url and first.locator("[data-testid=chat-stage]").count() == 0
    api.push({"type": "approval_resolved", "id": "ap-1", "decision": "allow", "by": "dashboard"})
    item(first, "approval").get_by_test_id("inbox-done").wait_for()
    # the cause ends (the bridge stops reporting it): the item leaves both pages
    api.update(
        attention={"live": [], "last_run": last_run("r1", "finished", "Done: the login form validates e-mail now")}
    )
    for p in (first, second):
        item(p, "approval").wait_for(state="detached")

    # dismiss on one page: gone on the other
    item(second, "error").get_by_test_id("inbox-dismiss").click()
    item(first, "error").wait_for(state="detached")

    # mark all read on the first page: the finished items and the unread counts go everywhere;
    # the question (pi's dialog, open until answered) stays
    first.get_by_test_id("inbox-mark-all-read").click()
    for p in (first, second):
        item(p, "finished").first.wait_for(state="detached")
        p.wait_for_selector("[data-testid=unread-badge]", state="detached")
        assert p.get_by_test_id("inbox-item").count() == 1
        wait_until(lambda p=p: title(p).startswith("(1) "), 5, what="the count in the title")

    # the question's cause ends: an empty inbox, the plain title and icon
    web.update(attention={"live": []})
    for p in (first, second):
        p.wait_for_selector("[data-testid=inbox-empty]")
        wait_until(lambda p=p: title(p) == "Pi-DE", 5, what="the plain title")
        p.wait_for_function("() => document.querySelector('link[rel=icon]').getAttribute('href') === '/favicon.svg'")


def test_phone_lands_on_the_inbox(dash_hv, agents, page_factory):
    api = agents(dash_hv, "n-api", "/srv/projects/api", session_name="fix login")
    docs = agents(dash_hv, "n-docs", "/srv/projects/docs")
    api.update(
        attention={
            "live": [live("approval", "ap-1", "bash `npm publish`", approval_id="ap-1", tool_name="bash")],
            "last_run": last_run("r1", "finished", "Release notes drafted", new_messages=2),
        }
    )
    docs.update(attention={"live": [], "last_run": last_run("r1", "error", "HTTP 500 from the model", ago=200)})
    phone = page_factory(**PHONE)
    phone.goto(dashboard_url(dash_hv))
    # the first screen: the inbox on top, the agents below it
    phone.wait_for_selector("[data-testid=inbox-home] [data-testid=inbox-item] >> nth=2")
    inbox_box = phone.get_by_test_id("inbox-home").bounding_box()
    roster_box = phone.get_by_test_id("roster").bounding_box()
    assert inbox_box["y"] < roster_box["y"] and inbox_box["y"] < 120, (inbox_box, roster_box)
    allow = phone.get_by_test_id("inbox-allow").bounding_box()
    assert allow["height"] >= 44 and allow["x"] + allow["width"] <= 390, allow
    IMG.mkdir(exist_ok=True)
    phone.screenshot(path=str(IMG / "pide-inbox-phone.png"))
    # the whole inbox, full screen, and back to the agents
    phone.get_by_test_id("inbox-link").tap()
    phone.wait_for_selector("[data-testid=inbox] [data-testid=inbox-item] >> nth=2")
    assert not phone.locator("aside.sidebar").is_visible()
    phone.get_by_role("button", name="Back to agents").tap()
    phone.wait_for_selector("[data-testid=inbox-home]")
    # opening an agent from the inbox: its conversation, not the inbox
    phone.locator(
        "[data-testid=inbox-home] [data-testid=inbox-item][data-agent-id='n-docs'] [data-testid=inbox-open]"
    ).tap()
    phone.wait_for_selector("[data-testid=chat-stage]")
    assert phone.url.endswith("#/agent/n-docs")


def test_hypivisor_sigkill_and_restart_the_pages_show_the_same_items_once(dash_hv, agents, page_factory):
    api = agents(dash_hv, "n-api", "/srv/projects/api", session_name="fix login")
    docs = agents(dash_hv, "n-docs", "/srv/projects/docs")
    web = agents(dash_hv, "n-web", "/srv/projects/web")
    # run items only: live causes are re-sent by a real bridge's register, which this scripted agent does not do
    api.update(attention={"live": [], "last_run": last_run("r1", "finished", "Release notes drafted", new_messages=2)})
    docs.update(attention={"live": [], "last_run": last_run("r1", "error", "HTTP 500 from the model")})
    web.update(attention={"live": [], "last_run": last_run("r1", "finished", "Tests pass")})
    pages = [page_factory(viewport=DESKTOP), page_factory(viewport=DESKTOP)]
    for p in pages:
        p.goto(dashboard_url(dash_hv) + "#/inbox")
        p.wait_for_selector("[data-testid=inbox] [data-testid=inbox-item] >> nth=2")
    before = sorted(pages[0].locator("[data-testid=inbox-item]").evaluate_all("els => els.map(e => e.dataset.itemId)"))

    web_item = item(pages[0], "finished", "n-web").get_attribute("data-item-id")

    dash_hv.restart()  # SIGKILL: the inbox and the read markers come back from the state dir
    # dismissed before the pages are back: their new list_attention answer no longer has it
    assert rpc(dash_hv, "dismiss_attention", {"id": web_item}) == {"status": "dismissed", "id": web_item}
    for p in pages:
        p.wait_for_selector("[data-testid=disconnected-banner]", state="detached", timeout=20_000)
        card(p, "n-api").wait_for(timeout=20_000)
    time.sleep(1.0)  # a heartbeat or two after the re-registration: nothing is added twice
    for p in pages:
        ids = p.locator("[data-testid=inbox-item]").evaluate_all("els => els.map(e => e.dataset.itemId)")
        assert sorted(ids) == sorted(set(before) - {web_item}), (ids, before)
        p.wait_for_selector("[data-node-id='n-api'] [data-testid=unread-badge] >> text=2 new")
        wait_until(lambda p=p: title(p).startswith("(2) "), 5, what="the count in the title")
    # the restarted hypivisor's events reach both pages: dismiss on one, gone on the other
    item(pages[0], "error").get_by_test_id("inbox-dismiss").click()
    item(pages[1], "error").wait_for(state="detached")


# ---------------------------------------------------------------------------
# Real pi agents (fake LLM, real bridge and shim)
# ---------------------------------------------------------------------------


@pytest.mark.pi
@pytest.mark.slow
def test_real_pi_finished_approval_open_and_error_on_two_pages(dash_hv, start_pi, fake_llm, page_factory):
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    pi = start_pi(PI, mode="tui", env={"HYPIVISOR_WS": dash_hv.ws_url, "PI_SOCKET_APPROVAL": "writes"})
    pi.wait_ready()
    nid = pi.node_id
    first = page_factory(viewport=DESKTOP)
    second = page_factory(viewport=DESKTOP)
    for p in (first, second):
        p.goto(dashboard_url(dash_hv) + "#/inbox")
        card(p, nid).wait_for(timeout=20_000)

    # a finished run (prompted in pi's own terminal): one item on both pages, an unread count on the card
    pi.submit("hello inbox")
    for p in (first, second):
        item(p, "finished", nid).wait_for(timeout=RUN_MS)
        p.wait_for_selector(f"[data-node-id='{nid}'] [data-testid=unread-badge]", timeout=RUN_MS)
    assert "Hello from fake LLM" in item(first, "finished", nid).inner_text()
    time.sleep(1.5)  # a heartbeat or two later, still exactly one
    assert item(first, "finished", nid).count() == 1 and item(second, "finished", nid).count() == 1

    # an approval: one item on both pages; Allow on the first page runs the call, the item leaves both
    pi.submit("TOOLCALL: touch inbox-made.txt")
    for p in (first, second):
        item(p, "approval", nid).wait_for(timeout=RUN_MS)
    assert "touch inbox-made.txt" in item(second, "approval", nid).inner_text()
    assert item(first, "approval", nid).count() == 1
    item(first, "approval", nid).get_by_test_id("inbox-allow").click()
    for p in (first, second):
        item(p, "approval", nid).wait_for(state="detached", timeout=RUN_MS)
    wait_until((pi.cwd / "inbox-made.txt").exists, 15, what="the allowed call to run")
    assert first.locator("[data-testid=chat-stage]").count() == 0  # decided without opening the agent

    # the run ends: its finished item replaces the older one. Opening the agent on the second page reads
    # it (the page is visible, focused and at the latest message): the item and the count go on the first
    item(first, "finished", nid).filter(has_text="Tool result received").wait_for(timeout=RUN_MS)
    assert item(first, "finished", nid).count() == 1
    second.bring_to_front()
    item(second, "finished", nid).get_by_test_id("inbox-open").click()
    second.wait_for_selector("[data-testid=chat-stage]")
    item(first, "finished", nid).wait_for(state="detached", timeout=10_000)
    first.wait_for_selector(f"[data-node-id='{nid}'] [data-testid=unread-badge]", state="detached")

    # a failed run (the fake LLM answers 500) while nobody looks: an error item; dismissed on one page,
    # gone on the other
    second.goto(dashboard_url(dash_hv) + "#/inbox")
    pi.submit("FAIL500 please")
    for p in (first, second):
        item(p, "error", nid).wait_for(timeout=90_000)
    assert item(first, "error", nid).count() == 1

    # Reply from the inbox: a prompt on the agent's link (not opened); the reply reads the agent, so the error
    # item goes everywhere, and the new run's finished item arrives
    row = item(first, "error", nid)
    row.get_by_test_id("inbox-reply").click()
    row.get_by_test_id("inbox-reply-text").fill("after the error")
    row.get_by_test_id("inbox-reply-send").click()
    for p in (first, second):
        item(p, "error", nid).wait_for(state="detached", timeout=10_000)
        item(p, "finished", nid).filter(has_text="You said: after the error").wait_for(timeout=RUN_MS)
    assert "after the error" in fake_llm.user_texts()[-1]
    assert first.locator("[data-testid=chat-stage]").count() == 0

    # Abort from the inbox while the agent works (a slow run started in pi's terminal)
    pi.submit("SLOW please")
    first.wait_for_selector(f"[data-node-id='{nid}'][data-activity=working]", timeout=RUN_MS)
    item(first, "finished", nid).get_by_test_id("inbox-abort").click()
    first.wait_for_selector(f"[data-node-id='{nid}'][data-activity=idle]", timeout=8_000)  # the slow run takes 10 s

    # dismiss on one page: gone on the other
    item(first, "finished", nid).get_by_test_id("inbox-dismiss").click()
    item(second, "finished", nid).wait_for(state="detached", timeout=10_000)


# ---------------------------------------------------------------------------
# A large inbox: 1,000 items across 200 agents
# ---------------------------------------------------------------------------


class Bulk:
    """Agents registered on one open registry connection, kept alive by heartbeats every 2 s (their answers
    are read, as a bridge reads them) until :meth:`close`."""

    def __init__(self, ws, node_ids):
        self.ws, self.node_ids = ws, node_ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, daemon=True)
        self._thread.start()

    def _keep(self):
        from websockets.exceptions import ConnectionClosed

        next_beat = time.monotonic() + 2
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_beat:
                    for nid in self.node_ids:
                        self.ws.send(json.dumps({"id": "hb", "method": "heartbeat", "params": {"id": nid}}))
                    next_beat = time.monotonic() + 2
                try:
                    self.ws.recv(timeout=0.2)
                except TimeoutError:
                    pass
        except ConnectionClosed:
            pass

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.ws.close()


def seed_inbox(hv, agents_n: int = 200, per_agent: int = 5) -> Bulk:
    """``agents_n`` agents on one registry connection (bridges use one each; the hypivisor allows 1,000 per
    connection), each reporting ``per_agent`` items: a finished run and live causes."""
    from websockets.sync.client import connect

    ws = connect(hv.ws_url, additional_headers=hv.auth_headers, max_size=None)
    now = time.time()
    kinds = ["approval", "question", "stalled", "budget"]
    ids = []
    for i in range(agents_n):
        nid = f"bulk-{i:03d}"
        ids.append(nid)
        reg = {
            "id": nid,
            "machine": f"box{i % 3}",
            "cwd": f"/srv/p{i % 40}/svc{i}",
            "port": 20000 + i,
            "pid": 100000 + i,
        }
        ws.send(json.dumps({"id": f"r{i}", "method": "register", "params": reg}))
        live_items = [
            {
                "kind": kinds[k % 4],
                "key": f"k{k}",
                "summary": f"{kinds[k % 4]} {k} of agent {i}: bash `make test-{k}`",
                "created_at": now - i * 7 - k,
                **({"approval_id": f"ap-{i}-{k}", "tool_name": "bash"} if kinds[k % 4] == "approval" else {}),
            }
            for k in range(per_agent - 1)
        ]
        run = {
            "key": "r1",
            "outcome": "finished",
            "summary": f"run of agent {i} done",
            "at": now - i,
            "new_messages": 2,
        }
        hb = {"id": nid, "attention": {"live": live_items, "last_run": run}}
        ws.send(json.dumps({"id": f"h{i}", "method": "heartbeat", "params": hb}))
    want = {f"r{i}" for i in range(agents_n)} | {f"h{i}" for i in range(agents_n)}
    deadline = time.monotonic() + 30
    while want and time.monotonic() < deadline:
        f = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if f.get("id") in want:
            assert "result" in f, f
            want.discard(f["id"])
    assert not want, f"{len(want)} requests unanswered"
    return Bulk(ws, ids)


OPEN_PROBE = """async () => {
  const t0 = performance.now();
  document.querySelector('[data-testid=inbox-link]').click();
  while (!document.querySelector('[data-testid=inbox] [data-testid=inbox-item]')) await new Promise(requestAnimationFrame);
  await new Promise(requestAnimationFrame);  // the frame that shows it
  return performance.now() - t0;
}"""


@pytest.mark.slow
def test_inbox_with_1000_items_across_200_agents_opens_bounded(dash_hv, page_factory):
    bulk = seed_inbox(dash_hv)
    try:
        page = page_factory(viewport=DESKTOP)
        page.goto(dashboard_url(dash_hv))
        page.wait_for_selector("[data-testid=inbox-link] >> text=1000", timeout=30_000)
        ms = page.evaluate(OPEN_PROBE)
        # the first page of rows, not all 1,000: opening costs the same however long the inbox is
        rows = page.get_by_test_id("inbox-item").count()
        assert rows == 300, rows
        assert page.evaluate("document.title").startswith("(99+) ")
        # the bench (make bench) holds the 300 ms budget; on a shared test machine only a loose bound
        assert ms < 3000, ms
        print(f"inbox with 1000 items: opened in {ms:.0f} ms")
        page.get_by_role("button", name="Show 300 more of 700").click()
        assert page.get_by_test_id("inbox-item").count() == 600
    finally:
        bulk.close()
