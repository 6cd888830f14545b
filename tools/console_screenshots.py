"""Screenshots of every console page at 1280x800 into docs/console/ (Debian's Chromium).

Run against a server seeded by the demo:

    adtarget demo && adtarget serve --port 8000 &
    python tools/console_screenshots.py --url http://127.0.0.1:8000 [--key KEY]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

OUT = Path(__file__).resolve().parents[1] / "docs" / "console"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def shoot(page: Page, url: str, key: str | None) -> None:
    page.goto(f"{url}/console#/audience")
    if key:
        page.get_by_role("textbox", name="API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
    page.get_by_role("textbox", name="Audiences to compare, one per line").fill(
        'country in ("US", "CA") and genres has any ("scifi")\n'
        'age between 18 and 34 and plan in ("standard", "premium")\n'
        'genres has any ("kids") and not plan = "premium"'
    )
    page.get_by_role("button", name="Show overlap").click()
    rule = page.get_by_role("textbox", name="Rule")
    rule.fill('country in ("US", "CA") and genres has any ("scifi") and plan = "premium"')
    page.wait_for_timeout(700)
    page.screenshot(path=OUT / "audience.png")
    rule.press_sequentially(" and dev")  # completion open on "device"
    page.wait_for_timeout(150)
    page.screenshot(path=OUT / "audience-completion.png")
    rule.fill('country in ("US", "CA") and genre has any ("scifi")')
    page.wait_for_timeout(700)
    page.screenshot(path=OUT / "audience-error.png")
    for name in ("campaigns", "uploads", "reports"):
        page.goto(f"{url}/console#/{name}")
        page.wait_for_timeout(900)
        if name == "uploads":
            details = page.get_by_role("button", name="Details")
            if details.count():
                details.first.click()
                page.wait_for_timeout(400)
        page.screenshot(path=OUT / f"{name}.png")
    page.goto(f"{url}/console#/why")
    page.get_by_label("User id").fill("u0000010")
    page.get_by_role("button", name="Explain").click()
    page.wait_for_timeout(700)
    page.screenshot(path=OUT / "why.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", default=None, help="API key (not needed in open mode)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    opts = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="adtarget-shots-"),
            executable_path=opts.chromium,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            shoot(context.new_page(), opts.url.rstrip("/"), opts.key)
        finally:
            context.close()
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    main()
