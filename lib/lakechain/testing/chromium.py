"""Headless Chromium driven over the DevTools protocol, for tests of the HTML report.

Why this and not a browser-automation framework: Debian's ``chromium`` package and the
``websockets`` client already present are enough (nothing downloads a browser), and the
handful of DevTools calls a test needs (navigate, evaluate, screenshot, console errors,
network requests) fit in one small class.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]


class ChromiumError(RuntimeError):
    pass


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise ChromiumError("no chromium on PATH: apt-get install -y chromium (scripts/setup.sh --dev does it)")


class Chromium:
    """One headless browser with a fresh profile; ``page()`` opens a tab. Use as a context manager."""

    def __init__(self, width: int = 1366, height: int = 900, start_timeout_s: float = 30.0) -> None:
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="lakechain-chromium-")
        self.proc = subprocess.Popen(
            [
                find_chromium(),
                *FLAGS,
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.port = self._port(start_timeout_s)

    def _port(self, timeout_s: float) -> int:
        """The DevTools port Chromium picked (``--remote-debugging-port=0``), from its profile."""
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ChromiumError(f"chromium exited with code {self.proc.returncode} at start")
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.05)
        raise ChromiumError(f"chromium did not open its DevTools port within {timeout_s:.0f} s")

    def page(self) -> Page:
        """A new tab (closed by ``Page.close``)."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as resp:
            tab = json.load(resp)
        return Page(connect(tab["webSocketDebuggerUrl"], max_size=None, open_timeout=10), self, tab["id"])

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """One tab: commands wait for their reply; events are kept for ``errors()`` and ``requests()``."""

    def __init__(self, ws: ClientConnection, browser: Chromium, target_id: str) -> None:
        self.ws, self.browser, self.target_id = ws, browser, target_id
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def send(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise ChromiumError(f"{method}: {msg['error']}")
                return dict(msg.get("result") or {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, event: str, timeout_s: float = 30.0) -> dict[str, Any]:
        seen = next((e for e in self.events if e["method"] == event), None)
        deadline = time.monotonic() + timeout_s
        while seen is None:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == event:
                    seen = msg
        return seen

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The expression's value (JSON-serialisable); a thrown error raises ChromiumError."""
        out = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in out:
            raise ChromiumError(f"{expression!r}: {out['exceptionDetails'].get('exception', out)}")
        return out.get("result", {}).get("value")

    def text(self, selector: str) -> str:
        """The text of the first element matching ``selector``."""
        return str(self.evaluate(f"document.querySelector({json.dumps(selector)}).textContent"))

    def texts(self, selector: str) -> list[str]:
        """The text of every element matching ``selector``, in document order."""
        return list(
            self.evaluate(
                f"Array.from(document.querySelectorAll({json.dumps(selector)}), e => e.textContent)"
            )
        )

    def click(self, selector: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def screenshot(self, path: str | os.PathLike[str], max_height: int = 8000) -> None:
        """A PNG of the whole page (up to ``max_height`` CSS pixels tall)."""
        height = min(int(self.evaluate("document.documentElement.scrollHeight")), max_height)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.browser.width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        self.send("Emulation.clearDeviceMetricsOverride")
        Path(path).write_bytes(base64.b64decode(shot["data"]))

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors since the last ``open``."""
        self.drain()
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(str(p.get("exceptionDetails", {}).get("exception", {}).get("description") or p))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
        return out

    def requests(self) -> list[str]:
        """URLs the page requested since the last ``open``."""
        self.drain()
        return [
            e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"
        ]

    def close(self) -> None:
        self.ws.close()
        url = f"http://127.0.0.1:{self.browser.port}/json/close/{self.target_id}"
        with urllib.request.urlopen(url, timeout=10):
            pass

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def drain(self, quiet_s: float = 0.2) -> None:
        """Collect the events already sent (until the socket is quiet for ``quiet_s``)."""
        while True:
            try:
                msg = json.loads(self.ws.recv(timeout=quiet_s))
            except TimeoutError:
                return
            if "method" in msg:
                self.events.append(msg)
