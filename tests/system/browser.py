"""A report page as a person sees it: Debian's headless Chromium driven by Selenium
(chromium-driver), with the browser's console and network logs read back.

``look_at(page, screenshot)`` opens a page from its file, takes a full-height screenshot and
returns what a test asserts on: console messages, every network request the page made, and
each image's name, shown size and natural size. ``./run test`` installs chromium and
chromium-driver (Debian) and selenium (requirements.txt) before the suite.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# each <img>: its id or alt, whether it finished loading, its natural and shown size
IMAGES_JS = """return Array.from(document.images).map(i => ({
  name: i.id || i.alt, complete: i.complete, natural: [i.naturalWidth, i.naturalHeight],
  shown: [i.width, i.height], hidden: i.hidden}));"""


@dataclass
class Seen:
    console: list[dict] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL it asked for but data:
    images: list[dict] = field(default_factory=list)
    screenshot: Path | None = None


def browser():
    """A headless Chromium with its console and network logs kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, DRIVER) if not shutil.which(p)]
    assert not missing, (f"{', '.join(missing)} missing: apt-get install chromium "
                         "chromium-driver (./run test does, as root or with sudo)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--window-size=1280,900", "--disable-background-networking",
                "--no-first-run", "--disable-extensions", "--disable-sync"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def requests_made(driver) -> list[str]:
    """The URLs of every request the performance log saw (the page's own file included),
    but the data: URIs of its inline images, which never leave the page."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith("data:"):
                urls.append(url)
    return urls


def look_at(driver, page: Path, screenshot: Path) -> Seen:
    """Open ``page``, wait for it to load, screenshot its whole height into ``screenshot``."""
    driver.get(page.resolve().as_uri())
    driver.execute_script("return document.readyState")  # get() returns once loaded
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 40, 16000))
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))
    return Seen(console=driver.get_log("browser"), requests=requests_made(driver),
                images=driver.execute_script(IMAGES_JS), screenshot=screenshot)


def column_values(driver, table_id: str, column: str) -> list[str]:
    """The cells of ``column`` in the table's current row order."""
    return driver.execute_script("""
      const t = document.getElementById(arguments[0]);
      const i = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent === arguments[1]);
      return Array.from(t.tBodies[0].rows).map(r => r.cells[i].textContent);""",
                                 table_id, column)


def click_header(driver, table_id: str, column: str) -> None:
    from selenium.webdriver.common.by import By

    table = driver.find_element(By.ID, table_id)
    next(th for th in table.find_elements(By.TAG_NAME, "th") if th.text == column).click()


def assert_self_contained(seen: Seen, page: Path) -> None:
    """No console message at all, no request but the page's own file, and every image
    decoded at a real size."""
    assert not seen.console, seen.console
    assert set(seen.requests) <= {page.resolve().as_uri()}, seen.requests
    for image in seen.images:
        assert image["complete"] and min(image["natural"]) > 0, image
        if not image["hidden"]:
            assert min(image["shown"]) > 0, image
