"""End to end in headless Chromium: a rater rates three items with the keyboard, reloads, and the SQLite
rows and the export hold exactly what was typed. Skipped only when chromium/chromedriver are absent."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rarl.cli import main
from rarl.review.app import create_app, create_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromium-driver are not installed"
    ),
]

# typed into the comment box: shortcut keys inside it must stay text
COMMENT = "wrong lobe; y n 1 0 typed here stay text"

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """The review app on a free loopback port, served from a thread like `rarl review serve` does."""
    from test_review_app import make_predictions  # tests/ is on sys.path under pytest's default import mode

    predictions = make_predictions(tmp_path / "run")
    db = tmp_path / "ratings.sqlite"
    server = create_server(create_app(predictions, db), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", db, predictions
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def driver(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach for the network
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def test_rate_three_items_with_the_keyboard(served, driver, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, db, predictions = served
    xss = json.loads(predictions.read_text().splitlines()[1])["pred_answer"]
    assert "<script>" in xss
    wait = WebDriverWait(driver, 20)

    def keys(*sequence: str) -> None:
        ActionChains(driver).send_keys(*sequence).perform()

    def at_item(pos: int) -> None:
        wait.until(ec.url_matches(rf"/rate/dr_test/{pos}$"))
        wait.until(ec.text_to_be_present_in_element((By.ID, "position"), f"Item {pos + 1} of 3"))

    # enter a rater name
    driver.get(base + "/")
    driver.find_element(By.ID, "rater").send_keys("dr_test", Keys.ENTER)
    at_item(0)
    assert "Keyboard:" in driver.find_element(By.ID, "shortcuts").text

    # Enter without scores is refused on the page and saves nothing
    keys(Keys.ENTER)
    wait.until(ec.visibility_of_element_located((By.ID, "error")))
    assert "Please rate" in driver.find_element(By.ID, "error").text
    assert driver.current_url.endswith("/rate/dr_test/0")

    # item 1: reasoning correct, answer correct
    keys("1", "y", Keys.ENTER)
    at_item(1)
    # item 2 shows the <script> prediction as text and runs nothing
    assert (
        driver.find_element(By.ID, "pred-answer").text
        == '<script>alert("pwned")</script><img src=x onerror=alert(1)>'
    )
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - accessing it is the check
    # change of mind is fine: 1 then 0 → reasoning wrong; n → answer wrong; c + text + Esc → comment
    keys("1", "0", "n", "c")
    assert driver.switch_to.active_element.get_attribute("id") == "comment"
    keys(COMMENT, Keys.ESCAPE)
    keys(Keys.ENTER)
    at_item(2)
    # item 3: reasoning correct, answer wrong; a double Enter must not create a second row
    keys("1", "n", Keys.ENTER, Keys.ENTER)
    wait.until(ec.url_contains("/rate/dr_test/done"))
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "main"), "rated 3 of 3"))

    # reload: everything is still there, and the arrows navigate the rated items
    driver.refresh()
    assert "rated 3 of 3" in driver.find_element(By.TAG_NAME, "main").text
    driver.get(base + "/rate/dr_test/0")
    at_item(0)
    keys(Keys.ARROW_RIGHT)
    at_item(1)
    driver.refresh()
    at_item(1)
    assert driver.find_element(By.ID, "progress").text == "3 / 3 rated"
    checked = {
        el.get_attribute("name"): el.get_attribute("value")
        for el in driver.find_elements(By.CSS_SELECTOR, "input[type=radio]:checked")
    }
    assert checked == {"reasoning_score": "0", "prediction_score": "0"}
    assert (
        driver.find_element(By.ID, "comment").get_attribute("value")
        == "wrong lobe; y n 1 0 typed here stay text"
    )
    keys(Keys.ARROW_LEFT)
    at_item(0)

    # the database holds exactly one row per item with what was typed
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT rater, item_key, reasoning_score, prediction_score, comment"
            " FROM ratings ORDER BY item_key"
        ).fetchall()
    assert rows == [
        ("dr_test", "synthetic/test/1", 1, 1, ""),
        ("dr_test", "synthetic/test/2", 0, 0, COMMENT),
        ("dr_test", "synthetic/test/3", 1, 0, ""),
    ]

    # and so does the export
    out = tmp_path / "ratings.csv"
    assert main(["review", "export", "--db", str(db), "--format", "csv", "--out", str(out)]) == 0
    with out.open(newline="") as handle:
        exported = [
            (r["item_id"], r["reasoning_score"], r["prediction_score"]) for r in csv.DictReader(handle)
        ]
    assert exported == [("1", "1", "1"), ("2", "0", "0"), ("3", "1", "0")]
