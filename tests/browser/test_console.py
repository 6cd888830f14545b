"""The console in a real browser, found by role and label as a person would use it.

Each test drives Chromium against a live ``adtarget serve`` seeded by ``adtarget demo`` and
checks what the page shows against the JSON API's own answer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

expect = pytest.importorskip("playwright.sync_api", reason="playwright not installed").expect

if TYPE_CHECKING:
    from tests.browser.conftest import LiveServer

pytestmark = pytest.mark.browser

RULE = 'country in ("US", "CA") and genres has any ("scifi")'


def sign_in(page: Any, server: LiveServer, where: str = "audience", key: str = "") -> None:
    page.goto(f"{server.url}/console#/{where}")
    page.get_by_role("textbox", name="API key").fill(key or server.admin_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Console pages")).to_be_visible()


def test_console_asks_for_a_key_and_refuses_a_wrong_one(page: Any, live_server: LiveServer) -> None:
    page.goto(f"{live_server.url}/console")
    page.get_by_role("textbox", name="API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not accepted")
    sign_in(page, live_server)
    expect(page.get_by_role("heading", name="Audience builder")).to_be_visible()


def test_typed_rule_shows_the_exact_size_the_api_gives(page: Any, live_server: LiveServer) -> None:
    with live_server.api() as api:
        expected = api.post("/v1/audiences/size", json={"rule": RULE}).json()["count"]
    assert expected and expected > 100
    sign_in(page, live_server)
    rule = page.get_by_role("textbox", name="Rule")
    rule.press_sequentially("gen")
    options = page.get_by_role("listbox", name="Suggestions").get_by_role("option")
    expect(options.first).to_contain_text("genres")  # completion from the registry
    rule.fill(RULE)
    status = page.get_by_role("status")
    expect(status).to_contain_text(str(expected), timeout=5_000)
    assert int(re.sub(r"\D", "", status.inner_text())) == expected


def test_completion_works_from_the_keyboard(page: Any, live_server: LiveServer) -> None:
    with live_server.api() as api:
        expected = api.post("/v1/audiences/size", json={"rule": 'genres has any ("scifi")'})
    sign_in(page, live_server)
    rule = page.get_by_role("textbox", name="Rule")
    options = page.get_by_role("listbox", name="Suggestions").get_by_role("option")
    rule.press_sequentially("gen")
    expect(options.first).to_contain_text("genres")
    rule.press("Enter")
    expect(rule).to_have_value("genres ")
    expect(options.first).to_contain_text("has any")  # then the set operators
    rule.press("Enter")
    rule.press_sequentially("sc")
    expect(options.first).to_contain_text("scifi")  # then the uploaded values
    rule.press("Tab")
    rule.press_sequentially(")")
    expect(rule).to_have_value('genres has any ("scifi")')
    expect(page.get_by_role("status")).to_contain_text(str(expected.json()["count"]))


def test_broken_rule_is_an_alert_with_the_token_marked(page: Any, live_server: LiveServer) -> None:
    sign_in(page, live_server)
    page.get_by_role("textbox", name="Rule").fill('country in ("US", "CA") and genre has any ("x")')
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("genre")
    expect(alert.locator("mark")).to_have_text("genre")
    expect(page.get_by_role("status")).to_contain_text("error")
    page.get_by_role("textbox", name="Rule").fill("age = 13 and age = 14")
    expect(page.get_by_role("status")).to_contain_text("Below the minimum audience size")
    expect(alert).to_be_empty()


def test_create_and_pause_a_campaign_then_undo(page: Any, live_server: LiveServer) -> None:
    sign_in(page, live_server, "campaigns")
    page.get_by_role("textbox", name="Campaign name").fill("Browser launch")
    page.get_by_role("button", name="Create campaign").click()
    row = page.get_by_role("row").filter(has_text="Browser launch")
    expect(row).to_contain_text("draft")
    row.get_by_role("button", name="Activate").click()
    expect(row).to_contain_text("active")
    row.get_by_role("button", name="Pause").click()
    expect(row).to_contain_text("paused")
    history = page.get_by_role("list", name="Your recent changes")
    expect(history).to_contain_text("Browser launch")

    page.get_by_role("button", name="Undo").click()
    expect(row).to_contain_text("active")
    with live_server.api() as api:
        campaigns = api.get("/v1/campaigns", params={"limit": 1000}).json()["campaigns"]
    assert [c["status"] for c in campaigns if c["name"] == "Browser launch"] == ["active"]

    page.get_by_role("button", name="Redo").click()
    expect(row).to_contain_text("paused")
    page.get_by_role("button", name="Redo").click()  # nothing left: the 409 in words
    expect(page.get_by_role("alert")).to_contain_text("nothing to redo")


def test_upload_a_small_file_and_watch_it_finish(
    page: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    csv = tmp_path / "few-users.csv"
    rows = [f"b{i:04d},US,{20 + i}" for i in range(39)] + ["b9999,FR,not-a-number"]
    csv.write_text("user_id,country,age\n" + "\n".join(rows) + "\n")  # 1 bad row in 40: 2.5%
    sign_in(page, live_server, "uploads")
    page.get_by_label("Feature file").set_input_files(str(csv))
    page.get_by_label("Mode").select_option("upsert")
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_contain_text("Upload finished", timeout=30_000)
    expect(page.get_by_label("Upload progress")).to_have_attribute("value", "100")
    result = page.get_by_role("table").filter(has_text="Rows accepted")
    expect(result).to_contain_text("39")
    expect(page.get_by_role("heading", name=re.compile("Rejected rows"))).to_be_visible()
    expect(page.get_by_role("table").filter(has_text="Reason")).to_contain_text("age")
    with live_server.api() as api:
        jobs = api.get("/v1/uploads").json()["uploads"]
    assert jobs[0]["rows_accepted"] == 39 and jobs[0]["rows_rejected"] == 1


def test_report_shows_a_chart_a_table_and_downloads_csv(page: Any, live_server: LiveServer) -> None:
    sign_in(page, live_server, "reports")
    chart = page.get_by_role("img", name="Impressions by day")
    expect(chart).to_be_visible()
    expect(chart.locator("canvas")).to_have_count(1)
    expect(page.get_by_role("table").last).to_contain_text("impressions")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    text = Path(download.value.path()).read_text()
    assert text.splitlines()[0].startswith("day,") and len(text.splitlines()) > 1


def test_why_not_served_gives_each_line_items_reason(page: Any, live_server: LiveServer) -> None:
    sign_in(page, live_server, "why")
    page.get_by_label("User id").fill("u0000010")
    page.get_by_role("button", name="Explain").click()
    expect(page.get_by_role("heading", name=re.compile("Not served"))).to_be_visible()
    expect(page.get_by_role("table").last).to_contain_text("targeting rule")


def test_a_conflicting_edit_is_explained_in_words(page: Any, live_server: LiveServer) -> None:
    sign_in(page, live_server, "campaigns")
    page.get_by_role("textbox", name="Campaign name").fill("Contested")
    page.get_by_role("button", name="Create campaign").click()
    row = page.get_by_role("row").filter(has_text="Contested")
    expect(row).to_contain_text("draft")
    row.get_by_role("button", name="Edit").click()
    dialog = page.get_by_role("dialog", name="Edit Contested")
    dialog.get_by_label("Budget").fill("2500")
    with live_server.api() as api:  # someone else changes it while the dialog is open
        campaigns = api.get("/v1/campaigns", params={"limit": 1000}).json()["campaigns"]
        (obj,) = [c for c in campaigns if c["name"] == "Contested"]
        assert api.patch(f"/v1/campaigns/{obj['id']}", json={"budget_total": 900}).is_success
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog.get_by_role("alert")).to_contain_text("changed since you loaded it")
    expect(dialog.get_by_role("alert")).not_to_contain_text("409")


def test_a_reader_looks_and_an_advertiser_sees_only_its_own(
    page: Any, live_server: LiveServer
) -> None:
    with live_server.api() as api:
        other = api.post("/v1/advertisers", json={"name": "Someone Else Inc"}).json()
        reader = api.post("/v1/keys", json={"role": "reader"}).json()["key"]
        own = api.post("/v1/keys", json={"role": "advertiser", "advertiser_id": 1}).json()["key"]
    sign_in(page, live_server, "campaigns", key=reader)
    expect(page.get_by_role("button", name="Undo")).to_be_disabled()
    expect(page.get_by_role("button", name="Create campaign")).to_have_count(0)
    expect(page.get_by_role("table").first).to_contain_text(other["name"])
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, live_server, "campaigns", key=own)
    expect(page.get_by_role("button", name="Undo")).to_be_enabled()
    expect(page.get_by_role("table").first).not_to_contain_text(other["name"])
    expect(page.get_by_role("button", name="Create campaign")).to_be_visible()
