"""Headless Chromium for the console, shared by the browser tests and ``make screenshots``.

Only the system's Chromium and chromedriver (Debian's ``chromium`` and ``chromium-driver``)
are used: Selenium is given the driver's path and told to stay offline, so nothing is
downloaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from stack.runner import Stack
from tests.e2e.conftest import OPERATOR_TOKEN, Shop

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver")
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
TOKEN = OPERATOR_TOKEN  # the token the e2e helpers (Shop) send as well
MISSING = (
    "no Chromium here: install Debian's chromium and chromium-driver packages (.ci/run does so when it runs as root with apt-get)"
)


def find_chromium() -> tuple[str, str] | None:
    """(browser, driver) paths, or None when either is missing."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = next((found for name in DRIVERS if (found := shutil.which(name))), None)
    return (browser, driver) if browser and driver else None


def new_driver(workdir: Path, width: int = 1440, height: int = 1000) -> webdriver.Chrome:
    """A headless Chromium with a fresh profile under ``workdir``."""
    browser, driver = find_chromium() or (None, None)
    if browser is None:
        raise RuntimeError(MISSING)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver
    options = Options()
    options.binary_location = browser
    for arg in ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='profile-', dir=workdir)}")
    options.add_argument(f"--window-size={width},{height}")
    service = Service(executable_path=driver, log_output=str(workdir / "chromedriver.log"))
    chrome = webdriver.Chrome(service=service, options=options)
    chrome.set_page_load_timeout(30)
    return chrome


def console_stack(workdir: Path, database_url: str | None, endpoint: str | None, **env: str) -> Stack:
    """A whole system on free ports whose console takes :data:`TOKEN` and refreshes every second."""
    from stack.infra import free_port
    from stack.services import SERVICES

    return Stack(
        workdir=workdir,
        database_url=database_url,
        endpoint=endpoint,
        ports={s.module: free_port() for s in SERVICES},
        env={
            "SAGA_OPERATOR_TOKEN": TOKEN,
            "ORCHESTRATOR_CONSOLE__REFRESH_SECONDS": "1",
            "RELAY_POLL_INTERVAL": "0.5",
            "CONSUMER_WAIT_SECONDS": "1",
            **env,
        },
    )


_TOKENS: dict[tuple[str, str], str] = {}


def personal_token(stack: Stack, name: str, role: str = "operator") -> str:
    """``name``'s personal token on ``stack``, issued once by the bootstrap admin."""
    key = (stack.url("orchestrator"), name)
    if key not in _TOKENS:
        issued = httpx.post(
            f"{key[0]}/operator/operators", json={"name": name, "role": role}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert issued.status_code == 201, issued.text
        _TOKENS[key] = issued.json()["token"]
    return _TOKENS[key]


def sign_in(chrome: webdriver.Chrome, stack: Stack, name: str = "ada", token: str | None = None) -> None:
    """Sign in on the console's page as ``name`` (with their personal token) or with ``token``,
    and wait for the answer: signed in, or refused."""
    chrome.get(stack.url("orchestrator") + "/console")
    chrome.find_element(By.ID, "token").send_keys(token or personal_token(stack, name))
    chrome.find_element(By.ID, "sign-in").click()
    wait(chrome, lambda c: c.find_elements(By.CSS_SELECTOR, ".who, .signin .error"))


def wait(chrome: webdriver.Chrome, condition, timeout: float = 15):
    """Until ``condition`` holds; an element missing or replaced meanwhile (the page is
    loading or refreshing itself) only means not yet."""
    return WebDriverWait(chrome, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        condition
    )


def visible(css: str):
    return expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css))


def place_outcomes(shop: Shop, hostile_name: str | None = None) -> dict[str, list[dict]]:
    """One order per outcome (and a second that needs a person), each settled: their sagas
    by the status they ended in."""
    sku = shop.new_sku(1000)
    bodies = {
        "completed": [shop.order_body(sku)],
        "compensated": [shop.order_body(sku)],
        "needs_intervention": [shop.refund_failure_body(sku), shop.refund_failure_body(sku), shop.refund_failure_body(sku)],
    }
    bodies["compensated"][0]["shipping_address"]["country"] = "AQ"
    if hostile_name:
        bodies["needs_intervention"][1]["shipping_address"]["name"] = hostile_name
    placed = {
        outcome: [shop.place(body, **{"Idempotency-Key": uuid.uuid4().hex}) for body in group]
        for outcome, group in bodies.items()
    }
    for outcome, group in placed.items():
        for order in group:
            _, saga = shop.settled(order, timeout=45)
            assert saga["status"] == outcome, saga
    return placed
