"""The pages in a real browser: Debian's Chromium driven by Playwright, against the real app
served by uvicorn on a free port, on the e2e stack (real dev server, real worker, real SMTP).

Without a Chromium (`/usr/bin/chromium`, or CHROMIUM_PATH) these tests skip, saying so;
`.ci/run` installs it, and there a skip fails the run. Screenshots go to .data/screenshots/.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright

from api.main import create_app
from settings import DEV_API_KEYS, Settings
from tests.conftest import E2EStack, free_port

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
HAS_CHROMIUM = CHROMIUM.exists()
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".data" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# axe-core's impacts that fail a page; minor and moderate ones are reported, not failed.
FAILING_IMPACTS = {"serious", "critical"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/pages/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.e2e)


@dataclass
class LiveApp:
    base_url: str
    settings: Settings
    stack: E2EStack


@pytest.fixture(scope="session")
async def live_app(e2e_stack: E2EStack) -> AsyncIterator[LiveApp]:
    """The app over real HTTP, sharing the stack's Temporal client and database."""
    port = free_port()
    settings = e2e_stack.settings.model_copy(
        update={"api_keys": DEV_API_KEYS, "public_base_url": f"http://127.0.0.1:{port}"}
    )
    app = create_app(settings, temporal_client=e2e_stack.client, engine=e2e_stack.engine)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
        await asyncio.sleep(0.05)
    yield LiveApp(f"http://127.0.0.1:{port}", settings, e2e_stack)
    server.should_exit = True
    await serving


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not HAS_CHROMIUM:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium): browser tests not run")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    opened = await context.new_page()
    yield opened
    await context.close()


async def assert_accessible(page: Page) -> None:
    """No serious or critical violation of axe-core's rules on the page as it stands."""
    results = await Axe().run(page)
    failing = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in FAILING_IMPACTS
    ]
    assert not failing, "accessibility violations:\n" + "\n".join(failing)


async def screenshots(page: Page, name: str) -> None:
    """The page at desktop and phone widths, for the README and for a reviewer's eyes."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(viewport)  # type: ignore[arg-type]
        await page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
