"""The page in a real browser (#34): Debian's chromium driven by Playwright (never a browser of
Playwright's own). It loads with no console error, shows every source, the live picture
changes, toggling boxes changes it, and four clicks in the editor give the TOML block of a
zone at the clicked fractions of the picture. A failing test leaves a screenshot beside it."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Launch
from tests.integration.test_observability import wait_ready

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            await chromium.close()


async def keep_a_screenshot(page: Any, path: Path) -> None:
    """What the browser showed when the test failed, for whoever reads the failure."""
    await page.screenshot(path=str(path))
    print(f"screenshot: {path}")


def green(png: bytes) -> int:
    """Pixels of the boxes' green (no photo of the clip has any)."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.int16)
    blue, green_, red = image[..., 0], image[..., 1], image[..., 2]
    return int(((green_ > 160) & (red < 90) & (blue < 90)).sum())


async def at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def at_most(count: Any, n: int) -> bool:
    return bool(await count() <= n)


async def until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        await asyncio.sleep(0.1)


async def test_the_page_shows_every_camera_the_live_picture_and_draws_a_zone(
    launch: Launch, browser: Any, tmp_path: Path
) -> None:
    secret = tmp_path / "http-password"
    secret.write_text("page-pass")
    from streamd.demo.clip import make_scene_clip

    still = tmp_path / "still.mp4"  # a person standing still: a box in every frame
    make_scene_clip(still, [[("astronaut", 180, 100)]] * 45)
    sources = [launch.source("front"), launch.source("yard", uri=still, tracking={})]
    daemon = await launch(sources, http=True, web={"username": "viewer", "password_file": secret})
    context = await browser.new_context(http_credentials={"username": "viewer", "password": "page-pass"})
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await wait_ready(launch.http_port, 200)
        await page.goto(launch.http + "/")
        await page.wait_for_selector(".card[data-source='yard'] img")
        names = await page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.source)")
        assert names == ["front", "yard"]

        await page.click(".card[data-source='front']")
        live = page.locator("#live")
        await live.wait_for()
        await until(lambda: page.evaluate("document.getElementById('live').naturalWidth > 0"), 10, "a live picture")
        assert not await page.locator("#grid").is_visible(), "the camera view replaces the grid"
        first = await live.screenshot()

        async def changed() -> bool:
            return await live.screenshot() != first

        await until(changed, 3, "the live picture changes")  # the clip's photo slides across

        # The still person: boxes on, then off (the stream restarts with bbox=0).
        await page.goto(launch.http + "/#/source/yard")
        await until(lambda: page.evaluate("document.getElementById('live').naturalWidth > 0"), 10, "yard's picture")

        async def box_pixels() -> int:
            return green(await live.screenshot())

        await until(lambda: at_least(box_pixels, 200), 5, "the box drawn")
        await page.uncheck("#overlays input[name=bbox]")
        await until(lambda: at_most(box_pixels, 20), 5, "the box gone once toggled off")

        async def recent_listed() -> bool:
            await page.reload()
            await page.wait_for_selector("#camera:not([hidden])")
            await asyncio.sleep(0.5)
            return bool(await page.locator("#recent-list li").count())

        await until(recent_listed, 15, "the camera's last events listed")  # the person's row
        await until(lambda: page.evaluate("document.getElementById('live').naturalWidth > 0"), 10, "yard again")

        # The editor: four clicks, the TOML block's fractions match the clicked pixels.
        await page.fill("#shape-name", "porch")
        box = await live.bounding_box()
        assert box is not None
        clicks = [(0.1, 0.2), (0.6, 0.2), (0.6, 0.9), (0.1, 0.9)]
        for fx, fy in clicks:
            await page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        toml = await page.text_content("#toml")
        assert toml is not None and toml.startswith('[[sources.zones]]\nname = "porch"\npolygon = '), toml
        found = [(float(x), float(y)) for x, y in re.findall(r"\[([\d.]+), ([\d.]+)\]", toml)]
        assert len(found) == 4
        for (x, y), (fx, fy) in zip(found, clicks, strict=True):
            assert abs(x - fx) <= 0.01 and abs(y - fy) <= 0.01, (found, clicks)
        assert not errors, errors
    except BaseException:
        await keep_a_screenshot(page, tmp_path / "page-failure.png")
        raise
    finally:
        await context.close()
        daemon.signal()
        assert await daemon.wait(30) == 0


async def test_the_events_page_lists_filters_and_plays_the_clip(
    tmp_path: Path, default_model: Path, broker: Any, subscriber: Any, browser: Any
) -> None:
    """#35: a recorded walk is listed with its thumbnail, a filter narrows the list, and its
    clip plays in the page's <video> (readyState >= 2, currentTime advancing)."""
    from tests.conftest import Streamd
    from tests.integration.test_events import recorded_porch

    rtsp, port, config = recorded_porch(tmp_path, default_model, broker.port)
    daemon = await Streamd("run", "-c", str(config), env={"STATE_DIRECTORY": str(tmp_path / "state")}).start()
    page = await browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await subscriber.wait_for(lambda c: c.on("/porch/clip/person"), 120)
        base = f"http://127.0.0.1:{port}"

        async def listed_with_clip() -> bool:
            await page.goto(base + "/#/events")
            await page.wait_for_selector("#event-list", state="attached")
            await asyncio.sleep(0.3)
            return bool(await page.locator("#event-list li button").count())

        await until(listed_with_clip, 20, "the event listed with its clip")
        assert await page.locator("#event-list li img").count() >= 1, "a thumbnail"
        assert not await page.locator("#grid").is_visible(), "the events view replaces the grid"
        before = await page.locator("#event-list li").count()
        await page.fill("#event-filters input[name=label]", "cat")
        await page.click("#event-filters button[type=submit]")
        await until(lambda: at_most(lambda: page.locator("#event-list li").count(), 0), 5, "the filter narrows it")
        await page.fill("#event-filters input[name=label]", "person")
        await page.click("#event-filters button[type=submit]")
        await until(lambda: at_least(lambda: page.locator("#event-list li").count(), before), 5, "person again")
        await page.locator("#event-list li button").first.click()

        async def playing() -> bool:
            return bool(
                await page.evaluate(
                    "(() => { const v = document.getElementById('clip'); return v.readyState >= 2; })()"
                )
            )

        await until(playing, 10, "the clip's video has data")
        first = await page.evaluate("document.getElementById('clip').currentTime")

        async def advanced() -> bool:
            return bool(await page.evaluate("document.getElementById('clip').currentTime") > first)

        await until(advanced, 5, "the clip plays")
        assert not errors, errors
    except BaseException:
        await keep_a_screenshot(page, tmp_path / "events-failure.png")
        raise
    finally:
        await page.close()
        rtsp.kill()
        daemon.signal()
        assert await daemon.wait(30) == 0
