"""Screenshot an audit report in headless Chromium: `python scripts/screenshot.py REPORT.html OUT.png`.

For the README's picture of a real report. Uses Debian's `chromium` and `chromedriver` (see the README's *Audit
report*), a 1400 x 900 window, and the page as it first opens, or with `--image ID` the viewer on image ID.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--image", type=int, help="open the viewer on this record id")
    parser.add_argument("--full", action="store_true", help="the whole page's height, not just the window")
    args = parser.parse_args(argv)
    browser, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not browser or not driver_path:
        print("needs chromium and chromedriver: apt-get install chromium chromium-driver", file=sys.stderr)
        return 1
    if not args.report.is_file():
        print(f"{args.report}: no such file", file=sys.stderr)
        return 1
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        "--hide-scrollbars",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        # The window's size includes the (invisible) browser chrome; the page itself must be 1400 x 900.
        metrics = {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        url = args.report.resolve().as_uri() + (f"#img={args.image}" if args.image is not None else "")
        driver.get(url)
        time.sleep(0.5)  # lazy thumbnails
        if args.full:
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": min(int(height), 8000)})
            time.sleep(0.5)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
    finally:
        driver.quit()
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
