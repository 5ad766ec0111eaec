"""Debian's headless chromium for the browser tests, launched the one way they all use: Playwright
drives ``/usr/bin/chromium`` (never a downloaded browser) with no sandbox, no GPU and no traffic
of its own."""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"  # pages whose audio plays without a click
MISSING = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"


def launch(playwright, *, autoplay: bool = False):
    """A headless chromium from ``playwright`` (``sync_playwright()``'s), ``autoplay`` letting audio start unclicked."""
    args = [*CHROMIUM_ARGS, AUTOPLAY] if autoplay else CHROMIUM_ARGS
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
