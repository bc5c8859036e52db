"""How fast a large audit report opens from disk in headless Chromium (Debian's chromium + chromedriver).

Writes a synthetic report of N images (tests/report_data.py's records, sharing 100 picture files), opens
report.html from file://, and prints: the time to the page built (cards, table, scatter; `attnviz.loadMs`), the
time until every data part has come (`attnviz.loaded`), and, once loaded, how long a filter change takes.

    python scripts/report_scale.py /tmp/report1m 1000000
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def open_report(path: Path) -> dict[str, object]:
    """Open report.html from file:// in headless Chromium: seconds until the navigation returned, until the page
    was built (cards, table, scatter; `attnviz.loadMs`), until every data part was in, and for a filter change."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.wait import WebDriverWait

    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver_path:
        raise SystemExit("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        driver.set_script_timeout(600)
        started = time.perf_counter()
        driver.get(path.as_uri())
        navigated = time.perf_counter() - started
        opened = driver.execute_script("return window.attnviz.loadMs")
        WebDriverWait(driver, 600, poll_frequency=0.2).until(lambda d: d.execute_script("return window.attnviz.loaded"))
        loaded = driver.execute_script("return performance.now()")
        shown = driver.execute_script("return document.getElementById('count').textContent")
        filtered = driver.execute_script(
            "const t = performance.now(); const s = document.querySelector('select[name=flag]');"
            "s.value = 'outlier'; s.dispatchEvent(new Event('change')); return performance.now() - t"
        )
    finally:
        driver.quit()
    return {
        "navigation_s": round(navigated, 2),
        "built_s": round(opened / 1000, 2),
        "all_in_s": round(loaded / 1000, 1),
        "filter_s": round(filtered / 1000, 2),
        "shown": shown,
    }


def main() -> int:
    from attnviz.audit.page import render_report, write_report

    from report_data import CLASSES, UNCLUSTERED, make_data

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("images", type=int)
    parser.add_argument("--reuse", action="store_true", help="keep the folder's data; write report.html's text again")
    args = parser.parse_args()
    path = args.folder / "report.html"
    if args.reuse and path.is_file():  # the same data, the page's own text (its scripts) written again
        inline = re.search(r'id="data">(.*?)</script>', path.read_text(encoding="utf-8"), re.S)
        assert inline, f"{path}: no data"
        path.write_text(render_report(json.loads(inline.group(1))), encoding="utf-8")
    else:
        per_scale = sum(size for _, _, sizes in CLASSES for size, _ in sizes)
        started = time.perf_counter()
        data = make_data(args.folder, scale=max(1, (args.images - UNCLUSTERED) // per_scale), files=100)
        path = write_report(args.folder, data)
        n = len(data["records"])  # type: ignore[arg-type]
        print(f"{n} images written in {time.perf_counter() - started:.1f} s: {path}")
    timed = open_report(path)
    print(
        f"page built (cards, table, scatter) {timed['built_s']:.2f} s after navigation; all records in at "
        f"{timed['all_in_s']:.1f} s ({timed['shown']}); a filter change then took {timed['filter_s']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
