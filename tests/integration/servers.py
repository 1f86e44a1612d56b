"""Real servers on 127.0.0.1 for tests: a static file server with HTTP Range support (aiohttp), and a
STAC API (``rustac serve``, memory backend)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RangeServer:
    """Serve ``root`` over HTTP on 127.0.0.1 with Range support (aiohttp static route).

    ``/drop/<path>`` sends the headers and half the body of ``<path>``, then drops the connection.
    Every request is logged in ``self.log`` as ``(path, range header, status, method, bytes sent)``.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.log: list[tuple[str, str | None, int]] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _drop(self, request: web.Request) -> web.StreamResponse:
        path = self.root / request.match_info["path"]
        data = path.read_bytes()
        resp = web.StreamResponse(status=200, headers={"Content-Length": str(len(data)), "Accept-Ranges": "none"})
        await resp.prepare(request)
        await resp.write(data[: len(data) // 2])
        request.transport.close()
        return resp

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def logger(request, response):  # after the file response set its final status
            self.log.append((request.path, request.headers.get("Range"), response.status, request.method, response.content_length))

        app = web.Application()
        app.on_response_prepare.append(logger)
        app.router.add_get("/drop/{path:.*}", self._drop)
        app.router.add_static("/", self.root, show_index=False)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> "RangeServer":
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        async def _stop():
            await self._runner.cleanup()

        fut = asyncio.run_coroutine_threadsafe(_stop(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class StacAPI:
    """``rustac serve`` on 127.0.0.1 loaded with the given collection and item files."""

    def __init__(self, *hrefs: Path):
        self.hrefs = [str(h) for h in hrefs]
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "StacAPI":
        exe = Path(sys.executable).with_name("rustac")
        cmd = [str(exe) if exe.exists() else "rustac", "serve", "--addr", f"127.0.0.1:{self.port}", *self.hrefs]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rustac serve exited: {self.proc.stdout.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("rustac serve did not start within 30 s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
