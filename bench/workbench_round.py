"""A whole demo round worked from the curation web UI with the keyboard only.

Runs ``marrowscope demo --expert ui`` (its own stack in a temporary home), then drives
Debian's Chromium with Playwright as the expert: every CST page is confirmed with Enter, every
AL cell gets the model's top guess with "a", until the round's tasks are all decided and the
campaign completes. Prints the decisions and decisions per minute of that keyboard work (a
script, not a person: it shows what the page and the API sustain, the upper bound for a human)
and writes bench/results/workbench_round.json.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="workbench-round-"))
    demo = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("marrowscope")),
            "--home",
            str(home),
            "demo",
            "--expert",
            "ui",
            "--rounds",
            "1",
            "--port-base",
            "27100",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    url = token = ""
    transcript = []
    for line in demo.stdout:
        transcript.append(line)
        if match := re.search(r"Open (http://\S+)/ui/", line):
            url = match[1]
        if url and re.fullmatch(r"\s+\S{30,}\s*", line):
            token = line.strip()
            break
    if not token:
        print("".join(transcript[-30:]))
        return 1
    # Keep reading the demo's output (a full pipe would stall it).
    reader = threading.Thread(target=lambda: transcript.extend(demo.stdout or []), daemon=True)
    reader.start()
    decisions = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), headless=True, args=ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/ui/")
        page.get_by_label("Your access token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Your queues").wait_for()
        started = 0.0
        last_decision = time.monotonic()
        while demo.poll() is None:
            try:
                queues = page.request.get(f"{url}/api/v1/campaigns").json()["campaigns"]
            except PlaywrightError:  # the demo finished and stopped its stack
                break
            work = [c for c in queues if c["open_cst"] or c["open_al"]]
            if not work:
                time.sleep(0.5)  # training, or the next round's predictions
                continue
            campaign = work[0]
            started = started or time.monotonic()
            if campaign["open_cst"]:
                page.goto(f"{url}/ui/#/cst/{campaign['id']}")
                page.wait_for_selector(".tile, p")
                count = page.locator(".tile").count()
                if count:
                    page.keyboard.press("Enter")  # confirm the whole page
                    page.locator(".tile .saved[data-saved='saved']").nth(count - 1).wait_for()
                    decisions += count
            else:
                page.goto(f"{url}/ui/#/al/{campaign['id']}")
                page.wait_for_selector(".choices button, p")
                while page.locator(".choices button").count():
                    page.keyboard.press("a")  # the model's top guess
                    decisions += 1
                    page.wait_for_timeout(20)
                page.locator("#sync", has_text="all saved").wait_for()
            last_decision = time.monotonic()
        seconds = last_decision - started
        browser.close()
    demo.wait(timeout=900)
    reader.join(timeout=10)
    print("".join(transcript[-25:]))
    results = {
        "decisions": decisions,
        "seconds": round(seconds, 1),
        "decisions_per_minute": round(60 * decisions / seconds, 1),
        "demo_exit": demo.returncode,
    }
    print(
        f"keyboard-only round in the web UI: {decisions} decisions in {seconds:.1f} s "
        f"= {results['decisions_per_minute']} decisions/min (scripted keys; demo exit {demo.returncode})"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "workbench_round.json").write_text(json.dumps(results, indent=2))
    return 0 if demo.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
