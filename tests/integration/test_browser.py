"""The web app in a real headless Chromium (Debian's ``chromium``, driven by Playwright through
that binary: nothing is downloaded) against a real ``concert serve`` on the embedded default.

Screenshots of every step are left in ``tests/screenshots/`` (not kept in git but for the two
the README shows)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

import services

pytestmark = pytest.mark.integration

SHOTS = Path(__file__).parents[1] / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OPS = ("ops@example.com", "a long operator password")
PASSWORD = "correct horse battery"


def _no_browser() -> None:
    reason = "Debian's chromium is not installed: the browser tests cannot run"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def serve(tmp_path: Path, **settings: str) -> Iterator[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **settings}
    cli = [sys.executable, "-m", "entrypoints.cli"]
    subprocess.run([*cli, "seed-demo"], cwd=tmp_path, env=env, check=True, capture_output=True)
    subprocess.run(
        [*cli, "create-admin", OPS[0]],
        cwd=tmp_path,
        env=env,
        input=OPS[1],
        text=True,
        check=True,
        capture_output=True,
    )
    with services.concert_serve(tmp_path, env) as served:
        yield served.url


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(tmp_path_factory.mktemp("web"), CONCERT_AUTH_ATTEMPTS_PER_ADDRESS="10000")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        _no_browser()
    SHOTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        await launched.close()


async def page_of(browser: Browser, base: str) -> Page:
    context = await browser.new_context(viewport={"width": 900, "height": 1200})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await page.goto(base + "/")
    return page


async def sign_up(page: Page, email: str) -> None:
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("#signup")
    await page.wait_for_selector("#dates li button")


async def test_a_customer_buys_two_seats_side_by_side_by_clicking(
    service: str, browser: Browser
) -> None:
    page = await page_of(browser, service)
    await page.screenshot(path=SHOTS / "1-sign-in.png")
    await sign_up(page, "mina@example.com")
    await page.click("#dates li button >> nth=0")
    await page.wait_for_selector(".seat.available")
    await page.fill("#quantity", "2")
    await page.click("#best")
    await page.wait_for_selector("#hold-list li >> nth=1")
    held = await page.locator("#hold-list li").all_inner_texts()
    assert [text.split(" (")[0] for text in held] == ["Floor A-25", "Floor A-26"]
    await page.wait_for_selector(".seat.mine >> nth=1")
    await page.screenshot(path=SHOTS / "2-two-seats-held.png", full_page=True)
    await page.fill("#amount", "100000")
    await page.click("#charge")
    await page.wait_for_function("document.getElementById('balance').textContent === '100,000'")
    await page.click("#pay")
    await page.wait_for_selector("text=Enjoy the show")
    await page.wait_for_selector("#booking-list tr >> nth=1")
    rows = await page.locator("#booking-list tr").all_inner_texts()
    assert sorted(row.split("\t")[0] for row in rows) == ["Floor A-25", "Floor A-26"]
    assert all(row.split("\t")[2] == "paid" for row in rows)
    await page.screenshot(path=SHOTS / "3-my-bookings.png", full_page=True)


async def test_a_seat_one_customer_holds_turns_taken_on_anothers_map_without_a_reload(
    service: str, browser: Browser
) -> None:
    first, second = await page_of(browser, service), await page_of(browser, service)
    await sign_up(first, "joon@example.com")
    await sign_up(second, "seo@example.com")
    for page in (first, second):
        await page.click("#dates li button >> nth=1")
        await page.wait_for_selector(".seat[data-seat] >> nth=0")
    seat = await first.locator(".seat.available >> nth=0").get_attribute("data-seat")
    await first.click(f'.seat[data-seat="{seat}"]')
    await first.wait_for_selector(f'.seat.mine[data-seat="{seat}"]')
    # the other's map, live, within two seconds, without a reload
    await second.wait_for_selector(f'.seat.held[data-seat="{seat}"]', timeout=2_000)
    await second.screenshot(path=SHOTS / "4-taken-live.png", full_page=True)


async def test_the_waiting_room_moves_from_waiting_to_admitted(
    tmp_path: Path, browser: Browser
) -> None:
    for base in serve(
        tmp_path, CONCERT_QUEUE_CAPACITY="1", CONCERT_SCHEDULER_INTERVAL_SECONDS="0.2"
    ):
        first, second = await page_of(browser, base), await page_of(browser, base)
        await sign_up(first, "first@example.com")
        await second.fill("#email", "second@example.com")
        await second.fill("#password", PASSWORD)
        await second.click("#signup")
        await second.wait_for_selector("text=in line")
        # one admission in the last minute: number 1 waits about a minute
        await second.wait_for_selector("text=You are number 1 in line, about 60 s to go.")
        await second.screenshot(path=SHOTS / "5-waiting.png")
        # the first customer pays for a seat, which frees the one place
        await first.click("#dates li button >> nth=0")
        await first.click(".seat.available >> nth=0")
        await first.wait_for_selector("#hold-list li")
        await first.click("#charge")
        await first.wait_for_function("document.getElementById('balance').textContent !== '0'")
        await first.click("#pay")
        # it asks again a tenth of its estimated wait later (here 60 s: one admission a minute)
        await second.wait_for_selector("text=You are in", timeout=20_000)
        await second.screenshot(path=SHOTS / "6-admitted.png")


async def test_an_operator_puts_a_date_on_sale_sees_a_sale_live_and_refunds_it(
    service: str, browser: Browser
) -> None:
    ops = await page_of(browser, service)
    await ops.goto(service + "/ops")
    await ops.fill("#email", OPS[0])
    await ops.fill("#password", OPS[1])
    await ops.click("#login")
    await ops.fill("#title", "Winter Gala")
    await ops.click("#add-concert")
    await ops.wait_for_selector("text=now put a date on sale")
    await ops.fill("#starts-at", "2030-01-10T19:00")
    await ops.click("#add-date")
    await ops.wait_for_selector("text=is on sale")
    await ops.wait_for_selector("#sales tr >> nth=2")
    buyer = await page_of(browser, service)
    await sign_up(buyer, "buyer@example.com")
    await buyer.click("#dates li button:has-text('Winter Gala')")
    await buyer.click(".seat.available >> nth=0")
    await buyer.wait_for_selector("#hold-list li")
    await buyer.fill("#amount", "150000")
    await buyer.click("#charge")
    await buyer.wait_for_function("document.getElementById('balance').textContent === '150,000'")
    await buyer.click("#pay")
    await buyer.wait_for_selector("text=Enjoy the show")
    # the sale appears on the operator's page by itself
    await ops.wait_for_selector("#sales tr:has-text('VIP') >> td:nth-child(5):text-is('1')")
    await ops.wait_for_selector("#line:has-text('let in over the last minute.')")
    await ops.screenshot(path=SHOTS / "7-sale-live.png", full_page=True)
    await buyer.reload()
    booking = await buyer.wait_for_selector("#booking-list tr")
    assert booking is not None
    reservation = await buyer.evaluate(
        "fetch('/reservations', {headers: "
        "{Authorization: `Bearer ${sessionStorage.getItem('token')}`}})"
        ".then(r => r.json()).then(b => b.reservations[0].reservation_id)"
    )
    await ops.fill("#refund-id", str(reservation))
    await ops.click("#refund")
    await ops.wait_for_selector("text=refunded: on sale again")
    await ops.wait_for_selector("#sales tr:has-text('VIP') >> td:nth-child(5):text-is('0')")
    await ops.screenshot(path=SHOTS / "8-refunded.png", full_page=True)
