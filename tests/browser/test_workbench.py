"""The experts' workbench in a real browser (Debian's Chromium driven by Playwright) against
the local stack with a CST+AL campaign in its review phase: sign in, correct a cell with a
hot-key, confirm a CST page in one action, label an AL cell, mark one too difficult, lose the
network and reload mid-way, and find in PostgreSQL exactly those decisions, each once, with the
user and the time in the audit trail. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from marrowscope.cli.datasets import import_synthetic
from marrowscope.core.clients import ServiceClients
from marrowscope.core.synthetic import iter_cells
from marrowscope.v1 import curation_pb2, orchestrator_pb2

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def reviewing_campaign(running_stack: dict) -> dict:
    """Two campaigns in their first review phase on one synthetic dataset, both for one expert:
    a CST campaign whose threshold sends every sampled cell to confirmation and an AL campaign
    whose margin sends every cell to labelling (deterministic queues from a barely trained
    model). No simulated expert runs: the browser is the expert."""

    async def wait_reviewing(clients: ServiceClients, campaign_id: str) -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            current = await clients.orchestrator.GetCampaign(
                orchestrator_pb2.CampaignIdRequest(campaign_id=campaign_id)
            )
            assert current.state != orchestrator_pb2.CAMPAIGN_STATE_FAILED, current.error
            if (
                current.rounds
                and current.rounds[-1].state == orchestrator_pb2.ROUND_STATE_REVIEWING
            ):
                return
            await asyncio.sleep(0.5)
        raise AssertionError("the campaign did not reach its review phase")

    async def scenario() -> dict:
        clients = ServiceClients(running_stack["peers"])
        try:
            await import_synthetic(
                iter_cells(8, seed=33), 8 * 17, "ui-cells", running_stack["store"], clients
            )
            admin = (("authorization", f"Bearer {running_stack['secrets']['admin_token']}"),)
            user = await clients.curation.CreateUser(
                curation_pb2.CreateUserRequest(name="ui-expert", role=curation_pb2.ROLE_EXPERT),
                metadata=admin,
            )
            ids = {}
            for name, method, extra in (
                (
                    "ui-cst",
                    orchestrator_pb2.CAMPAIGN_METHOD_CST,
                    {"cst_threshold": 0.01, "sample_size": 60},
                ),
                (
                    "ui-al",
                    orchestrator_pb2.CAMPAIGN_METHOD_AL,
                    {"al_margin": 1.01, "sample_size": 12},
                ),
            ):
                campaign = await clients.orchestrator.CreateCampaign(
                    orchestrator_pb2.CreateCampaignRequest(
                        request_id=name,
                        name=name,
                        method=method,
                        dataset="ui-cells",
                        parameters=orchestrator_pb2.CampaignParameters(
                            initial_per_class=2,
                            validation_per_class=1,
                            test_per_class=1,
                            rounds=1,
                            epochs=1,
                            input_size=48,
                            width=8,
                            **extra,
                        ),
                    )
                )
                await clients.orchestrator.StartCampaign(
                    orchestrator_pb2.CampaignIdRequest(campaign_id=campaign.id)
                )
                await wait_reviewing(clients, campaign.id)
                ids[name] = campaign.id
            return {"cst": ids["ui-cst"], "al": ids["ui-al"], "token": user.token}
        finally:
            await clients.close()

    out = asyncio.run(scenario())
    out["url"] = f"http://127.0.0.1:{running_stack['state']['ports']['curation_http']}"
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed: `apt-get install -y chromium` (.ci/run does it)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


def sign_in(page: Page, url: str, token: str) -> None:
    page.goto(f"{url}/ui/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Your access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your queues")).to_be_visible()


def decisions(dsn: str, user: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT d.client_decision_id, d.action, d.class_code, t.kind, t.proposed_class, d.task_id,
                      EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id) AS undone
               FROM decisions d JOIN review_tasks t ON t.id = d.task_id
               WHERE d.user_name = %s AND d.action <> 'undo' ORDER BY d.created_at""",
            (user,),
        ).fetchall()


def test_an_expert_works_a_round_from_the_browser(
    running_stack: dict, reviewing_campaign: dict, browser: Browser
) -> None:
    url, cst, al = reviewing_campaign["url"], reviewing_campaign["cst"], reviewing_campaign["al"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    bad_token = page.goto(f"{url}/ui/")
    assert bad_token is not None and bad_token.ok
    page.get_by_label("Your access token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Unknown token")
    sign_in(page, url, reviewing_campaign["token"])
    page.screenshot(path=str(SHOTS / "01-queues.png"), full_page=True)

    # CST: correct one cell with a hot-key, reject one with x, then confirm the page at once.
    page.goto(f"{url}/ui/#/cst/{cst}")
    grid = page.get_by_role("grid")
    expect(grid).to_be_visible()
    tiles = grid.get_by_role("gridcell")
    page_size = tiles.count()
    assert page_size >= 3
    heading = page.get_by_role("heading", level=1).inner_text()
    proposed = heading.rsplit("(", 1)[1].rstrip(")")
    other = "LY" if proposed != "LY" else "MO"
    other_key = page.locator(f".palette button[data-code='{other}'] kbd").inner_text()
    page.keyboard.press(other_key)  # the first (focused) cell joins class `other`
    page.keyboard.press("x")  # the second cell is rejected (too difficult)
    expect(tiles.nth(0)).to_have_attribute("data-state", "correct")
    expect(tiles.nth(0).locator(".saved")).to_have_text("saved")
    expect(tiles.nth(1)).to_have_attribute("data-state", "too_difficult")
    # Second thoughts on the first cell (already saved): a new answer undoes the old one.
    changed = "EO" if other != "EO" and proposed != "EO" else "BA"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press(page.locator(f".palette button[data-code='{changed}'] kbd").inner_text())
    expect(tiles.nth(0).locator(".badge")).to_have_text(f"→ {changed}")
    expect(tiles.nth(0).locator(".saved")).to_have_text("saved")
    page.screenshot(path=str(SHOTS / "02-cst-corrected.png"), full_page=True)
    started = time.monotonic()
    page.keyboard.press("Enter")  # one action confirms every remaining cell
    expect(page.locator(".tile[data-state='confirm'] .saved[data-saved='saved']")).to_have_count(
        page_size - 2
    )
    confirm_seconds = time.monotonic() - started
    expect(page.locator("#sync")).to_have_text("all saved")
    page.screenshot(path=str(SHOTS / "03-cst-confirmed.png"), full_page=True)

    # AL: the model's top guess with "a", then "too difficult" with 0.
    page.goto(f"{url}/ui/#/al/{al}")
    expect(page.get_by_role("heading", name="AL labelling")).to_be_visible()
    top_guess = page.locator(".choices button").first.get_attribute("data-code")
    page.screenshot(path=str(SHOTS / "04-al.png"), full_page=True)
    page.keyboard.press("a")
    expect(page.locator("#status")).to_contain_text(f"Labelled {top_guess}")
    page.keyboard.press("0")
    expect(page.locator("#status")).to_contain_text("too difficult")
    expect(page.locator("#sync")).to_have_text("all saved")

    # The network goes away: the next label waits in the outbox; a reload keeps it and sends it.
    page.route("**/api/v1/decisions", lambda route: route.abort())
    next_guess = page.locator(".choices button").first.get_attribute("data-code")
    page.keyboard.press("a")
    expect(page.locator("#sync")).to_contain_text("not saved")
    unsent = page.evaluate(
        "Object.keys(localStorage).filter(k => k.startsWith('ms_outbox_')).map(k => JSON.parse(localStorage[k]).length)"
    )
    assert unsent == [1]
    page.unroute("**/api/v1/decisions")
    page.reload()
    expect(page.locator("#sync")).to_have_text("all saved", timeout=20000)
    page.screenshot(path=str(SHOTS / "05-after-reload.png"), full_page=True)

    # Exactly the decisions made in the browser, each once, with the user and time audited.
    every = decisions(running_stack["dsn"], "ui-expert")
    assert [(d[1], d[2], d[6]) for d in every if d[6]] == [("correct", other, True)]  # taken back
    stored = [d for d in every if not d[6]]
    cst = [d for d in stored if d[3] == "CST"]
    al = [d for d in stored if d[3] == "AL"]
    assert len(cst) == page_size and len({d[0] for d in stored}) == len(stored)
    assert sorted(d[1] for d in cst) == sorted(
        ["correct", "too_difficult"] + ["confirm"] * (page_size - 2)
    )
    assert [d for d in cst if d[1] == "correct"][0][2] == changed
    assert [(d[1], d[2]) for d in al] == [
        ("label", top_guess),
        ("too_difficult", None),
        ("label", next_guess),
    ]
    assert len({d[5] for d in stored}) == len(stored)  # never two decisions for one task
    with psycopg.connect(running_stack["dsn"]) as conn:
        audit = conn.execute(
            """SELECT count(*) FILTER (WHERE action = 'decide'), count(*) FILTER (WHERE action = 'undo'),
                      min(at) > now() - interval '10 minutes' FROM audit_events
               WHERE actor = 'ui-expert'"""
        ).fetchone()
    assert audit == (len(every), 1, True)
    print(
        f"\nCST page of {page_size} cells: 1 correction, 1 rejection, then Enter confirmed "
        f"{page_size - 2} in {confirm_seconds:.2f} s (until every tile showed 'saved')"
    )
    context.close()


def test_undo_progress_and_admin_view(
    running_stack: dict, reviewing_campaign: dict, browser: Browser
) -> None:
    url, campaign = reviewing_campaign["url"], reviewing_campaign["al"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    console: list[str] = []  # a Content-Security-Policy violation shows up here
    requested: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.on("request", lambda request: requested.append(request.url))
    sign_in(page, url, reviewing_campaign["token"])
    # An id in the link that is not a queue id: an error, and no request made with it.
    page.goto(f"{url}/ui/#/cst/..%2Fadmin%2Fusers")
    expect(page.get_by_role("alert")).to_contain_text("does not name a queue")
    assert not [u for u in requested if "/api/" in u and ("admin" in u or "%2F" in u)]
    page.goto(f"{url}/ui/#/al/{campaign}")
    expect(page.get_by_role("heading", name="AL labelling")).to_be_visible()
    before = len(decisions(running_stack["dsn"], "ui-expert"))
    page.keyboard.press("s")  # the second guess
    expect(page.locator("#sync")).to_have_text("all saved")
    page.keyboard.press("u")
    expect(page.locator("#status")).to_contain_text("Undone")
    after = decisions(running_stack["dsn"], "ui-expert")
    assert len(after) == before + 1 and after[-1][6] is True  # stored, then undone (kept, marked)
    page.goto(f"{url}/ui/#/progress/{reviewing_campaign['cst']}")
    expect(page.get_by_role("heading", name="Progress per round and class")).to_be_visible()
    rows = page.locator("tbody tr")
    expect(rows.first).to_be_visible()
    decided = sum(int(rows.nth(i).locator("td").nth(5).inner_text()) for i in range(rows.count()))
    # The page confirmed, corrected and rejected in the other test (its size follows the model).
    cst_tasks = {d[5] for d in decisions(running_stack["dsn"], "ui-expert") if d[3] == "CST"}
    assert decided == len(cst_tasks) >= 3
    expect(page.get_by_role("link", name="Admin")).to_be_hidden()  # experts have no admin view
    assert not [m for m in console if "Content Security Policy" in m], console
    context.close()

    admin = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    sign_in(admin, url, running_stack["secrets"]["admin_token"])
    admin.get_by_role("link", name="Admin").click()
    expect(admin.get_by_role("heading", name="Campaigns")).to_be_visible()
    section = admin.get_by_role("region", name="ui-al")
    expect(section).to_be_visible()
    expect(section.locator("tbody tr")).to_have_count(1)
    plot = section.get_by_role("img")
    expect(plot).to_have_js_property("complete", True)
    assert plot.evaluate("img => img.naturalWidth") == 800
    admin.screenshot(path=str(SHOTS / "06-admin.png"), full_page=True)
