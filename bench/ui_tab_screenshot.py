"""Screenshot a page after clicking one of its tabs, through headless Chromium's DevTools protocol.

The Prefect UI picks a flow run's tab before the run has loaded, so ``?tab=Artifacts`` falls back to Logs; a
click after load does not. Used by bench/ui_screenshot.sh:

    python bench/ui_tab_screenshot.py CHROMIUM URL TAB_LABEL OUT.png [WIDTH HEIGHT]
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from itertools import count
from typing import Any

from websockets.sync.client import connect

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--hide-scrollbars",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    chromium, url, tab, out = sys.argv[1:5]
    width, height = (int(v) for v in (sys.argv[5:7] or ["1400", "900"]))
    port = free_port()
    profile = tempfile.mkdtemp(prefix="mathaug-chromium-")
    proc = subprocess.Popen(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2))
                ws_url = next(p["webSocketDebuggerUrl"] for p in pages if p.get("type") == "page")
                break
            except (OSError, StopIteration, ValueError):
                time.sleep(0.2)
        else:
            raise RuntimeError("chromium's DevTools endpoint did not come up")
        ids = count(1)
        with connect(ws_url, max_size=64 * 1024 * 1024) as ws:

            def call(method: str, **params: Any) -> dict[str, Any]:
                msg_id = next(ids)
                ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
                while True:
                    reply = json.loads(ws.recv(timeout=60))
                    if reply.get("id") == msg_id:
                        return reply.get("result", {})

            call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            call("Page.enable")
            call("Page.navigate", url=url)
            clicked = False
            for _ in range(60):  # the run loads, then its tabs appear
                time.sleep(0.5)
                result = call(
                    "Runtime.evaluate",
                    expression=(
                        "(() => { const t = [...document.querySelectorAll('button, [role=tab], a, li, span')]"
                        f".find(e => e.textContent.trim() === {json.dumps(tab)} && e.offsetParent !== null);"
                        " if (!t) return false; t.click(); return true; })()"
                    ),
                    returnByValue=True,
                )
                if result.get("result", {}).get("value"):
                    clicked = True
                    break
            if not clicked:
                raise RuntimeError(f"no visible tab {tab!r} on {url}")
            time.sleep(4)  # the tab's content loads
            shot = call("Page.captureScreenshot", format="png")
        with open(out, "wb") as fh:
            fh.write(base64.b64decode(shot["data"]))
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
