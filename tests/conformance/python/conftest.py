"""The Python referee's fixtures: `teeform sim serve` on a free loopback port (with a stand-in
chain for on-chain-KMS CVMs), and the official SDK's client against it at each API version the
referee checks, every exchange recorded so a failure shows what the simulator said."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from phala_cloud import DEFAULT_API_VERSION, PhalaCloud

ROOT = Path(__file__).resolve().parents[3]
TEEFORM = os.environ.get("TEEFORM_BIN") or str(ROOT / "target/debug/teeform")
API_KEY = "conformance-key"
KMS_CONTRACT = "0x" + "11" * 20
CHAIN_ID = 8453

#: The versions every flow runs at: the SDK's default, and the one teeform pins.
VERSIONS = [DEFAULT_API_VERSION, "2026-01-21"]


class StandInChain:
    """A JSON-RPC server answering the simulator's two chain questions: `eth_call` (does the
    app contract allow a hash?) with `allowed`, and no receipt for any transaction."""

    def __init__(self) -> None:
        self.allowed = True
        chain = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if req.get("method") == "eth_call":
                    result = "0x" + "0" * 63 + ("1" if chain.allowed else "0")
                else:
                    result = None
                body = json.dumps({"jsonrpc": "2.0", "id": req.get("id"), "result": result}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()


class Sim:
    """A running `teeform sim serve`."""

    def __init__(self, chain: StandInChain) -> None:
        args = [TEEFORM, "sim", "serve", "--addr", "127.0.0.1:0", "--api-key", API_KEY,
                "--restart-ms", "300", "--boot-ms", "300",
                "--chain-rpc", chain.url, "--kms-contract", KMS_CONTRACT, "--chain-id", str(CHAIN_ID)]
        import tempfile

        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env={**os.environ, "NO_COLOR": "1"})
        seen = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            seen += line
            m = re.search(r"API prefix: (http://127\.0\.0\.1:\d+/api/v1)", line)
            if m:
                self.prefix = m.group(1)
                break
        else:
            self.log.seek(0)
            raise RuntimeError(f"simulator did not start: {seen}{self.log.read()}")
        self.base = self.prefix.removesuffix("/api/v1")
        self.raw = httpx.Client(base_url=self.base, timeout=30)

    def get(self, path: str) -> dict:
        """A GET on the simulator's own routes (`/_sim/...`)."""
        r = self.raw.get(path)
        r.raise_for_status()
        return r.json()

    def env(self, cvm: str) -> dict:
        """What the CVM would see: its env, decrypted with the simulator's test KMS key."""
        return self.get(f"/_sim/cvms/{cvm}/env")

    def settle(self, timeout_s: float = 15) -> None:
        """Waits until no CVM is mid-transition, so the next update is accepted."""
        import time

        until = time.monotonic() + timeout_s
        while True:
            cvms = self.get("/_sim/stats")["cvms"]
            if all(c["status"] in ("running", "stopped") for c in cvms.values()):
                return
            assert time.monotonic() < until, f"CVMs still busy: {cvms}"
            time.sleep(0.1)

    def stop(self) -> None:
        self.raw.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Recorder:
    """Every exchange a client made, for failure messages."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[str, str, int, str]] = []

    def hook(self, response: httpx.Response) -> None:
        if "text/event-stream" in response.headers.get("content-type", ""):
            body = "(an event stream)"
        else:
            response.read()
            body = response.text
        self.exchanges.append((response.request.method, str(response.request.url), response.status_code, body))

    def last(self, n: int = 3) -> str:
        shown = []
        for method, url, status, body in self.exchanges[-n:]:
            body = body if len(body) <= 1500 else body[:1500] + "…"
            shown.append(f"  {method} {url} -> HTTP {status}\n    {body}")
        return "\n".join(shown)


def client(sim: Sim, version: str, recorder: Recorder) -> PhalaCloud:
    """The SDK's own client at `version`, its responses recorded."""
    c = PhalaCloud(api_key=API_KEY, base_url=sim.prefix, version=version)  # type: ignore[arg-type]
    c._client.event_hooks["response"].append(recorder.hook)
    return c


@pytest.fixture(scope="session")
def sim():
    chain = StandInChain()
    s = Sim(chain)
    s.chain = chain  # type: ignore[attr-defined]
    yield s
    s.stop()
    chain.stop()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(params=VERSIONS)
def version(request) -> str:
    return request.param
