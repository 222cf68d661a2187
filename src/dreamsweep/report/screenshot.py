"""A report page as a browser draws it: headless Chromium, 1280 px wide.

`python -m dreamsweep.report.screenshot <report folder> docs/report_demo.png` makes the
README's picture. The PNG carries the sha256 of the page template it was rendered from, so a
test can tell when the picture no longer shows the page the code writes.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import tempfile
from importlib.resources import files
from pathlib import Path

from PIL import Image, PngImagePlugin

TEMPLATE_KEY = "dreamsweep-template-sha256"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def template_digest() -> str:
    """sha256 of the HTML template every report page is rendered from."""
    template = files("dreamsweep.report") / "templates" / "index.html.j2"
    return hashlib.sha256(template.read_bytes()).hexdigest()


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 2400) -> Path:
    """Draw ``page`` (an index.html) into ``out`` (PNG) with the template's digest in it."""
    chromium = shutil.which("chromium")
    if chromium is None:
        raise FileNotFoundError("chromium is not installed (tools/install-test-services)")
    with tempfile.TemporaryDirectory() as profile:
        shot = Path(profile) / "page.png"
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}/p",
             f"--window-size={width},{height}", f"--screenshot={shot}", page.resolve().as_uri()],
            capture_output=True, timeout=120, check=True,
        )  # fmt: skip
        info = PngImagePlugin.PngInfo()
        info.add_text(TEMPLATE_KEY, template_digest())
        with Image.open(shot) as image:
            image.save(out, pnginfo=info)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report folder (with index.html)")
    parser.add_argument("out", type=Path, help="the PNG to write, e.g. docs/report_demo.png")
    parser.add_argument("--height", type=int, default=1400)
    args = parser.parse_args()
    print(screenshot(args.report / "index.html", args.out, height=args.height))


if __name__ == "__main__":
    main()
