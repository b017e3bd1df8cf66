"""`make setup`'s browser step: use a system Chromium when there is one, else
let Playwright install its own (which needs access to Playwright's CDN)."""

from __future__ import annotations

import logging
import subprocess
import sys

from reportflow.core.browser import find_chromium
from reportflow.core.config import get_settings

log = logging.getLogger(__name__)


def main() -> int:
    found = find_chromium(get_settings().chromium_executable)
    if found:
        sys.stdout.write(f"browser: using {found}\n")
        return 0
    sys.stdout.write("browser: no system Chromium; running `playwright install chromium`\n")
    result = subprocess.run(
        [sys.executable, "-m", "playwright", "install", "chromium"], check=False
    )
    if result.returncode != 0:
        sys.stderr.write(
            "browser: could not install Playwright's Chromium. Install one from your OS "
            "(Debian/Ubuntu: `apt-get install chromium`) or set CHROMIUM_EXECUTABLE.\n"
        )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
