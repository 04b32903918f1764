"""The README's picture: a page of `charrnn visualize` after a Select and a Match, in headless Chromium.

Drives the page the way a reader does (types **from** and **to**, sets the **threshold**, presses
**units on here**, clicks the first unit listed, presses **match**), then scrolls the text to the
selection and takes the screenshot. Needs selenium (the ``[test]`` extra) and Debian's
``chromium`` and ``chromium-driver``::

    charrnn visualize --checkpoint runs/shakespeare/best.npz --chars 10000 --out shakespeare.html
    python docs/picture.py shakespeare.html --text "Exit PANDARUS." --threshold 0.6 --out docs/visualize.png

``--text`` is found in the page's text (its first occurrence); ``--nth`` picks a later one.
Prints what the page found (the units, the matches), for the caption.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("--text", required=True, help="the stretch to select, as it stands in the page's text")
    ap.add_argument("--nth", type=int, default=1, help="which occurrence of --text (default: the first)")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=Path("visualize.png"))
    ap.add_argument("--size", default="1200,800", help="window width,height in pixels")
    args = ap.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", f"--window-size={args.size}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(args.page.resolve().as_uri())
        text = driver.execute_script("return JSON.parse(document.getElementById('data').textContent).text")
        start = -1
        for _ in range(args.nth):
            start = text.find(args.text, start + 1)
            if start < 0:
                sys.exit(f"{args.page}: {args.text!r} occurs fewer than {args.nth} time(s) in the page's text")

        def put(element_id: str, value: object) -> None:
            box = driver.find_element("id", element_id)
            box.clear()
            box.send_keys(str(value))

        put("sel-from", start + 1)  # the page counts characters from 1
        put("sel-to", start + len(args.text))
        put("sel-threshold", args.threshold)
        driver.find_element("id", "sel-go").click()
        units = driver.find_elements("css selector", "#sel-units li")
        if not units:
            sys.exit(f"no unit is on over {args.text!r} at threshold {args.threshold}: "
                     + driver.find_element("id", "sel-note").text)
        units[0].click()
        driver.find_element("id", "match-go").click()
        found = {
            "selection": [start + 1, start + len(args.text)],
            "select": driver.find_element("id", "sel-note").text,
            "units": [li.text for li in units],
            "match": driver.find_element("id", "match-note").text,
            "matches": [li.text for li in driver.find_elements("css selector", "#match-list li")],
        }
        # the selection a quarter of the way down the text, as the page's own links do
        driver.execute_script("""const box = document.getElementById("text"), s = box.children[arguments[0]];
            box.scrollTop += s.getBoundingClientRect().top - box.getBoundingClientRect().top - box.clientHeight / 4;""",
                              start)
        # and the side panel at the selection's results
        driver.execute_script("""const aside = document.querySelector("aside");
            const note = document.getElementById("sel-note");
            aside.scrollTop += note.getBoundingClientRect().top - aside.getBoundingClientRect().top - 80;""")
        time.sleep(0.3)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(json.dumps(found, indent=1, ensure_ascii=False))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
