"""Real servers on 127.0.0.1 for tests: a static file server with HTTP Range support (aiohttp), and a
STAC API (``rustac serve``, memory backend)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def wait_until_up(proc: subprocess.Popen, probe, name: str, timeout: float = 30.0) -> None:
    """Poll ``probe()`` until it returns True; fail with the process output if it exits or times out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode()[-3000:] if proc.stdout else ""
            raise RuntimeError(f"{name} exited at start: {out}")
        try:
            if probe():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not start within {timeout:.0f} s")


class RangeServer:
    """Serve ``root`` over HTTP on 127.0.0.1 with Range support (aiohttp static route), in a subprocess.

    A separate process, so that client code holding the GIL (GDAL warps) cannot starve the server.
    ``/drop/<path>`` sends the headers and half the body of ``<path>``, then drops the connection.
    Every request is logged (``self.log``) as ``(path, range header, status, method, bytes sent)``.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.port = free_port()
        self._logfile = Path(tempfile.mkstemp(suffix=".jsonl")[1])
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> list[tuple]:
        lines = self._logfile.read_text().splitlines()
        return [tuple(json.loads(line)) for line in lines if line.strip()]

    def clear_log(self) -> None:
        self._logfile.write_text("")

    def __enter__(self) -> "RangeServer":
        cmd = [sys.executable, "-m", "tests.integration.servers", str(self.root), str(self.port), str(self._logfile)]
        self.proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[2])
        wait_until_up(self.proc, lambda: _port_open(self.port), "range server")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def _serve(root: Path, port: int, logfile: Path) -> None:
    async def drop(request: web.Request) -> web.StreamResponse:
        data = (root / request.match_info["path"]).read_bytes()
        resp = web.StreamResponse(status=200, headers={"Content-Length": str(len(data)), "Accept-Ranges": "none"})
        await resp.prepare(request)
        await resp.write(data[: len(data) // 2])
        request.transport.close()
        return resp

    async def logger(request, response):  # after the file response has set its final status
        with open(logfile, "a") as f:
            f.write(json.dumps([request.path, request.headers.get("Range"), response.status, request.method, response.content_length]) + "\n")

    app = web.Application()
    app.on_response_prepare.append(logger)
    app.router.add_get("/drop/{path:.*}", drop)
    app.router.add_static("/", root, show_index=False)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, handle_signals=True)


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
        wait_until_up(self.proc, lambda: urllib.request.urlopen(self.url + "/", timeout=1).status == 200, "rustac serve")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def extension_errors(item: dict) -> list[str]:
    """Errors of ``item`` against the bundled schema of every extension it declares (tests/schemas, no network)."""
    import jsonschema

    schemas = {}
    for f in (Path(__file__).parents[1] / "schemas").glob("*.json"):
        s = json.loads(f.read_text())
        schemas[s["$id"].rstrip("#")] = s
    missing = [u for u in item["stac_extensions"] if u not in schemas]
    assert not missing, f"no bundled schema for {missing}"

    def leaves(e):  # the innermost messages: a oneOf (item or collection) wraps the ones that say what is wrong
        return [m for c in e.context for m in leaves(c)] if e.context else [e.message]

    return [f"{u}: {m}" for u in item["stac_extensions"]
            for e in jsonschema.Draft7Validator(schemas[u]).iter_errors(item) for m in leaves(e)]


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
