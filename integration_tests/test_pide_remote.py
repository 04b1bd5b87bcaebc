"""Pi-DE as a daily driver, part 2, in Chromium against a real hypivisor and real pi agents (fake LLM):

* while pi works: a steer (Alt+Enter, or the Steer button) goes to pi's queue at once and says pi cannot take it
  back; a follow-up (Enter) waits in Pi-DE's queue, where it can be edited or cancelled, until the run ends;
  Esc stops the run, as in pi;
* `/` lists pi's built-ins, prompt templates and skills, runs /compact /new /name /model /thinking through the
  agent link, and says what this pi version cannot run instead of sending text that does nothing;
* model and thinking-level pickers in the chat header, from the agent's available models;
* attachments: image thumbnails (with a warning when the model takes no images), text files as chips, never
  the bridge's `<file>` markup in the person's own message.
"""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from integration_tests.harness.pide import dashboard_url, shot

pytestmark = [pytest.mark.browser, pytest.mark.pi, pytest.mark.slow]

PI = "0.73.1"
WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
PROMPT = "textarea[aria-label=Prompt]"


@pytest.fixture
def pi_on(start_pi):
    def start(hv, version=PI, **kw):
        return start_pi(version, mode="rpc", env={"HYPIVISOR_WS": hv.ws_url}, **kw)

    return start


def open_agent(page, hv, node_id):
    page.goto(dashboard_url(hv))
    page.click(f"[data-node-id='{node_id}']", timeout=20_000)
    page.wait_for_selector("[data-testid=inspector] .mono >> text=bash")  # init_state arrived with pi's tools


def send(page, text):
    page.fill(PROMPT, text)
    page.get_by_role("button", name="Send").click()


def type_and_enter(page, text, **press):
    page.fill(PROMPT, text)
    page.press(PROMPT, "Alt+Enter" if press.get("alt") else "Enter")


def phone_shot(page, name):
    """The same page at a phone's size (after the layout's transitions settle), then wide again."""
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(600)
    shot(page, name)
    page.set_viewport_size(WIDE)
    page.wait_for_timeout(300)


def conversation_users(page) -> list[str]:
    return page.locator("[data-testid=message-list] [data-role=user]").all_inner_texts()


def png(width: int = 48, height: int = 32) -> bytes:
    """A small red-and-blue PNG (no imaging library needed)."""
    rows = b"".join(
        b"\x00" + (b"\xd0\x30\x30" * (width // 2) + b"\x30\x60\xd0" * (width - width // 2)) for _ in range(height)
    )
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")  # fmt: skip


def test_steer_and_follow_up_while_pi_works_edit_and_cancel_in_the_queue_esc_stops(
    dash_hv, pi_on, fake_llm, page_factory
):
    pi = pi_on(dash_hv)
    page = page_factory(viewport=WIDE)
    open_agent(page, dash_hv, pi.node_id)

    fake_llm.slow(words=120, delay=0.1)
    send(page, "stream slowly please")
    page.wait_for_selector(".msg-assistant.is-streaming", timeout=20_000)
    page.wait_for_selector("[data-testid=composer-hint] >> text=Alt+Enter steers")

    type_and_enter(page, "follow one")
    type_and_enter(page, "follow two")
    queue = page.locator("[data-testid=queue]")
    queue.locator("[data-state=held] >> text=follow one").wait_for()
    assert queue.locator("[data-state=held]").count() == 2
    assert page.locator("[data-testid=message-list] >> text=follow one").count() == 0  # in the queue, not the chat
    # cancel one, edit the other (pi has not seen either)
    page.get_by_role("button", name="Cancel queued prompt follow two").click()
    page.get_by_role("button", name="Edit queued prompt follow one").click()
    page.fill("textarea[aria-label='Edit queued prompt']", "follow one, edited")
    page.press("textarea[aria-label='Edit queued prompt']", "Enter")
    queue.locator("text=follow one, edited").wait_for()

    type_and_enter(page, "steer now", alt=True)
    steer = queue.locator("[data-kind=steer][data-state=acked]")
    steer.wait_for(timeout=15_000)
    assert "pi has no way to withdraw it" in steer.inner_text()
    assert steer.get_by_role("button").count() == 0
    shot(page, "remote-queue-wide")
    phone_shot(page, "remote-queue-phone")

    # the steer is the next turn of this run; the edited follow-up is sent once the run ends; the cancelled never
    page.wait_for_selector("text=You said: steer now", timeout=40_000)
    page.wait_for_selector("text=You said: follow one, edited", timeout=40_000)
    page.wait_for_selector("[data-testid=queue]", state="detached", timeout=10_000)
    users = conversation_users(page)
    assert users.count("steer now") == 1 and users.count("follow one, edited") == 1
    assert not any("follow two" in u for u in users)
    assert not any("follow two" in t for t in fake_llm.user_texts())

    # Esc in the composer stops the run, as in pi
    fake_llm.slow(words=200, delay=0.1)
    send(page, "this one gets stopped")
    page.wait_for_selector(".msg-assistant.is-streaming", timeout=20_000)
    page.focus(PROMPT)
    page.keyboard.press("Escape")
    page.wait_for_selector("text=Aborted", timeout=20_000)
    page.wait_for_selector("button[aria-label=Stop]", state="detached", timeout=10_000)


def test_slash_commands_pickers_and_what_this_pi_cannot_run(
    dash_hv, pi_on, pi_version, fake_llm, pi_home, page_factory
):
    new_pi = not pi_version.startswith("0.")
    (pi_home.agent / "prompts").mkdir(parents=True, exist_ok=True)
    (pi_home.agent / "prompts" / "greet.md").write_text(
        "---\ndescription: greet someone\n---\nPlease greet $1 warmly.\n"
    )
    settings = pi_home.agent / "settings.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "compaction": {"keepRecentTokens": 1}}))
    pi = pi_on(dash_hv, version=pi_version)
    page = page_factory(viewport=WIDE)
    open_agent(page, dash_hv, pi.node_id)

    # the header's pickers come from the agent's own models; fake-model does not reason: thinking is off
    model = page.locator("[data-testid=model-picker]")
    thinking = page.locator("[data-testid=thinking-picker]")
    model.wait_for()
    assert model.input_value() == "fake/fake-model"
    assert sorted(model.locator("option").all_inner_texts()) == ["fake/fake-model", "fake/fake-vision · images"]
    assert thinking.is_disabled()
    model.select_option("fake/fake-vision")
    page.wait_for_selector("[data-testid=inspector] >> text=fake/fake-vision")  # pi's model_select
    page.wait_for_function("() => !document.querySelector('[data-testid=thinking-picker]').disabled")
    thinking.select_option("high")
    page.wait_for_function("() => document.querySelector('[data-testid=thinking-picker]').value === 'high'")

    # `/` lists pi's built-ins, its prompt templates and skills; what this pi cannot run is marked, with why
    page.fill(PROMPT, "/")
    menu = page.locator("[data-testid=autocomplete]")
    menu.locator("text=/compact").wait_for()
    for name in ("/model", "/thinking", "/name", "/new", "/reload", "/export", "/greet", "/skill:harden-pi-socket"):
        assert menu.locator(f".ac-label >> text='{name}'").count() == 1, name
    assert "unavailable" in menu.locator("li", has_text="/export").get_attribute("class")
    new_row = menu.locator("li", has=page.locator(".ac-label >> text='/new'"))
    assert ("unavailable" in (new_row.get_attribute("class") or "")) is not new_pi
    shot(page, f"remote-slash-{pi_version}")
    phone_shot(page, f"remote-slash-{pi_version}-phone")
    page.fill(PROMPT, "")

    # /thinking and /model from the composer, with their arguments completed
    page.fill(PROMPT, "/thinking lo")
    menu.locator("text=low").wait_for()
    page.press(PROMPT, "Enter")
    page.wait_for_function("() => document.querySelector('[data-testid=thinking-picker]').value === 'low'")
    page.fill(PROMPT, "/model fake/fake-model")
    page.keyboard.press("Escape")  # close the completion, then send the line as typed
    page.press(PROMPT, "Enter")
    page.wait_for_function("() => document.querySelector('[data-testid=model-picker]').value === 'fake/fake-model'")
    page.fill(PROMPT, "/name renamed from slash")
    page.keyboard.press("Escape")
    page.press(PROMPT, "Enter")
    page.wait_for_selector("[data-testid=chat-stage] >> text=renamed from slash", timeout=15_000)

    # a prompt template: expanded by pi >= 1.5; refused with the reason on 0.73 (never sent as text)
    page.fill(PROMPT, "/greet Ada")
    page.keyboard.press("Escape")
    page.press(PROMPT, "Enter")
    if new_pi:
        page.wait_for_selector("text=You said: Please greet Ada warmly.", timeout=30_000)
    else:
        page.wait_for_selector("[data-testid=composer-problem] >> text=/greet cannot be run from here", timeout=5_000)
        assert page.input_value(PROMPT) == "/greet Ada"  # kept, so it can be changed
        send(page, "a plain prompt")
        page.wait_for_selector("text=You said: a plain prompt", timeout=30_000)
    assert not any(t.startswith("/greet") for t in fake_llm.user_texts())

    # /compact through ctx.compact()
    page.fill(PROMPT, "/compact")
    page.keyboard.press("Escape")
    page.press(PROMPT, "Enter")
    page.wait_for_selector("[data-testid=command-notice] >> text=Conversation compacted", timeout=60_000)

    # /new: a new session where pi has an API for it; otherwise said, and nothing is sent
    sent_before = len(fake_llm.requests())
    page.fill(PROMPT, "/new")
    page.keyboard.press("Escape")
    page.press(PROMPT, "Enter")
    if new_pi:
        page.wait_for_selector("[data-testid=command-notice] >> text=New session started", timeout=30_000)
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=message-list] [data-role=user]').length === 0",
            timeout=15_000,
        )
    else:
        page.wait_for_selector(
            "[data-testid=composer-problem] >> text=/new cannot be run from here: pi 0.73.1 cannot run it",
            timeout=5_000,
        )
    assert len(fake_llm.requests()) == sent_before


def test_attachments_thumbnails_chips_and_a_warning_for_a_text_only_model(
    dash_hv, pi_on, fake_llm, page_factory, tmp_path
):
    pi = pi_on(dash_hv)
    page = page_factory(viewport=WIDE)
    open_agent(page, dash_hv, pi.node_id)
    page.locator("[data-testid=model-picker]").wait_for()

    image = tmp_path / "chart.png"
    image.write_bytes(png())
    note = tmp_path / "notes.md"
    note.write_text("# Notes\nattached-body-5c1\nsecond line\n")
    page.set_input_files("input[type=file]", [str(image), str(note)])
    page.wait_for_selector("[data-testid=attachment] img.thumb")
    page.wait_for_selector("[data-testid=image-warning] >> text=fake/fake-model takes no images")
    shot(page, "remote-attach-warning")
    send(page, "what do these show")
    page.wait_for_selector("text=You said: what do these show", timeout=30_000)
    bubble = page.locator("[data-testid=message-list] [data-role=user]").last
    bubble.locator("[data-testid=file-chip] >> text=notes.md").wait_for()
    src = bubble.locator("img[data-testid=image-thumb]").get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    text = bubble.inner_text()
    assert "<file" not in text and "attached-body-5c1" not in text and "what do these show" in text
    assert any("attached-body-5c1" in t for t in fake_llm.user_texts())  # pi got the file itself
    shot(page, "remote-attach-sent-wide")
    phone_shot(page, "remote-attach-sent-phone")

    # a model that takes images: no warning
    page.locator("[data-testid=model-picker]").select_option("fake/fake-vision")
    page.wait_for_selector("[data-testid=inspector] >> text=fake/fake-vision")
    page.set_input_files("input[type=file]", str(image))
    page.wait_for_selector("[data-testid=attachment] img.thumb")
    assert page.locator("[data-testid=image-warning]").count() == 0
