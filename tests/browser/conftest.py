"""The console in a real, headless Chromium against a whole running system.

Skipped, with the reason, only where no Chromium is installed (``.ci/run`` installs
Debian's ``chromium`` and ``chromium-driver`` when it can). The family has a time cap: each
test may take ``PER_TEST`` seconds, and once the family has run ``FAMILY_CAP`` seconds the
rest fail at once instead of eating the suite's budget.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.browser.driver import MISSING, console_stack, find_chromium, new_driver, place_outcomes
from tests.conftest import USER_AWS_ENDPOINT
from tests.e2e.conftest import Shop

PER_TEST = 120
FAMILY_CAP = 300
HOSTILE_NAME = '<script>document.title="pwned"</script><b id="injected">Ada</b>'
_started: list[float] = []


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.timeout(PER_TEST))


@pytest.fixture(autouse=True)
def _family_cap():
    _started[:] = _started or [time.monotonic()]
    elapsed = time.monotonic() - _started[0]
    if elapsed > FAMILY_CAP:
        pytest.fail(f"the browser tests have run {elapsed:.0f} s, over their cap of {FAMILY_CAP} s")
    yield


@pytest.fixture(scope="session")
def chromium():
    if find_chromium() is None:
        pytest.skip(MISSING)


@pytest.fixture(scope="package")
def console(chromium, tmp_path_factory, postgres_server):
    """A running system whose orchestrator serves the console, stopped once these tests are
    done so that its processes and connections are not held through the rest of the suite."""
    with console_stack(tmp_path_factory.mktemp("console"), postgres_server, USER_AWS_ENDPOINT) as running:
        yield running


@pytest.fixture(scope="package")
def console_shop(console) -> Shop:
    return Shop(console)


@pytest.fixture(scope="package")
def outcomes(console_shop) -> dict[str, list[dict]]:
    """Settled sagas: one completed, one compensated, three that need a person (the second
    ships to a name that is an HTML injection)."""
    return place_outcomes(console_shop, hostile_name=HOSTILE_NAME)


@pytest.fixture
def browser(chromium, tmp_path):
    """A fresh browser (no cookies) per test."""
    chrome = new_driver(tmp_path)
    yield chrome
    chrome.quit()
