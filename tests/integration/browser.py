"""A real headless Chromium (Debian's package) driven by Playwright, for the HTML outputs."""

from __future__ import annotations


def render_in_chromium(page_path) -> dict:
    """Open ``page_path`` in headless Chromium (a real browser): console errors, page errors, requests that left the
    page (it must be self-contained), and each image's natural and shown size."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import chromium

    seen = {"console_errors": [], "page_errors": [], "requests": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: m.type == "error" and seen["console_errors"].append(m.text))
        page.on("pageerror", lambda e: seen["page_errors"].append(str(e)))
        page.on("request", lambda r: r.url.startswith(("http:", "https:")) and seen["requests"].append(r.url))
        page.goto(page_path.resolve().as_uri(), wait_until="load")
        seen["images"] = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, "
                                       "i.getBoundingClientRect().width, i.getBoundingClientRect().height])")
        seen["headings"] = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        browser.close()
    return seen
