"""``make screenshots``: start the system, place one order per outcome, and photograph the
console's overview and one compensated saga with the browser code the tests use."""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
from pathlib import Path

from selenium.webdriver.common.by import By

from tests.browser.driver import console_stack, new_driver, place_outcomes, sign_in, visible, wait
from tests.e2e.conftest import Shop


def _postgres(workdir: Path) -> str | None:
    """``DATABASE_URL``, else the server on 127.0.0.1:5432 if one answers, else None (embedded)."""
    if url := os.environ.get("DATABASE_URL"):
        return url
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", 5432)) == 0:
            return "postgresql://postgres@127.0.0.1:5432/postgres"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/screenshots"))
    parser.add_argument("--rounds", type=int, default=3, help="how many times to place the set of orders")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="screenshots-"))
    with console_stack(workdir, _postgres(workdir), os.environ.get("AWS_ENDPOINT_URL")) as stack:
        shop = Shop(stack)
        placed = []
        for _ in range(args.rounds):
            placed.append(place_outcomes(shop))
            _everyday(shop, 8)
        chrome = new_driver(workdir, 1440, 1000)
        try:
            sign_in(chrome, stack)
            wait(chrome, visible("#attention"))
            wait(chrome, lambda c: c.find_element(By.CSS_SELECTOR, "[data-queue='saga-escalations'] .depth").text != "0")
            _shoot(chrome, args.out / "overview.png")
            chrome.get(stack.url("orchestrator") + f"/console/sagas/{placed[-1]['compensated'][0]['saga_id']}")
            wait(chrome, visible("#timeline"))
            _shoot(chrome, args.out / "compensated-saga.png")
        finally:
            chrome.quit()
    print(f"screenshots in {args.out}")


def _everyday(shop: Shop, count: int) -> None:
    """A more usual mix besides: most orders complete, a card is declined now and then."""
    sku = shop.new_sku(1000)
    orders = [
        shop.place(shop.order_body(sku, payment_token="tok_chargeDeclined" if i % 4 == 3 else "tok_visa")) for i in range(count)
    ]
    for order in orders:
        shop.settled(order, timeout=45)


def _shoot(chrome, path: Path) -> None:
    """The whole page, however long: the viewport grows to the document's height first."""
    height = chrome.execute_script("return document.documentElement.scrollHeight")
    chrome.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1440, "height": max(900, height), "deviceScaleFactor": 1, "mobile": False}
    )
    try:
        chrome.save_screenshot(str(path))
    finally:
        chrome.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


if __name__ == "__main__":
    main()
