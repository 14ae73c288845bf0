"""What the gateway adds to a request: constant-rate load through it and straight to the service, interleaved.

    .venv/bin/python -m bench.gateway_overhead [--rate 240] [--seconds 30]

Starts (on free loopback ports, state in /tmp/gw-bench) one customer service (API role, SQLite) and
two gateways in front of it: JWT checks on and authentication off. A separate load-generator process
sends GET /customers/{id} open-loop at a constant total rate, round-robin over the three targets, so all
three see the same moments of machine noise; latency is measured from each request's *scheduled* time
(no coordinated omission). Each process's CPU time (user + system, from /proc) over the phase, divided by
the requests it served, gives the CPU per request of the service and of each gateway: unlike latency, it
holds up on a loaded machine. A second phase compares httpx.AsyncClient with aiohttp as a client (encode/httpx#3215)
at the same rate against the service. Bounded: requests = rate x seconds per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.__main__ import issue_token
from gateway.settings import GatewaySettings
from servicekit.auth import InternalAuthSettings, internal_headers
from servicekit.settings import REPO_ROOT

STATE = Path("/tmp/gw-bench")
TOKEN = "bench-internal-token-0123456789abcdef"
WARMUP = 20  # requests per target before the measured ones


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "CRM_STATE_DIR": str(STATE), "CRM_INTERNAL_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def _start(argv: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    log = open(STATE / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)


def _free_port() -> int:
    """A port nothing listens on now (a fixed one may be some other connection's ephemeral port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


# ---- load generator (its own process) -------------------------------------------------------------------


async def _load(
    targets: list[dict[str, object]], rate: float, seconds: float, client_kind: str
) -> dict[str, list[float]]:
    """Open loop: request n goes out at start + n/rate to targets[n % len], whatever earlier ones are doing."""
    import aiohttp

    latencies: dict[str, list[float]] = {str(t["name"]): [] for t in targets}
    errors: dict[str, int] = {str(t["name"]): 0 for t in targets}
    total = int(rate * seconds)
    connector = aiohttp.TCPConnector(limit=200, force_close=False)
    aio = aiohttp.ClientSession(connector=connector)
    signer = InternalAuthSettings(internal_token=TOKEN)  # built once: reading settings costs more than signing
    hx = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=200), trust_env=False)

    async def one(target: dict[str, object], scheduled: float) -> None:
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        given = target.get("headers")
        headers: dict[str, str] = dict(given) if isinstance(given, dict) else {}
        if target.get("sign"):
            headers.update(internal_headers("GET", str(target["path"]), settings=signer))
        url = str(target["url"])
        try:
            if client_kind == "httpx" or target.get("client") == "httpx":
                response = await hx.get(url, headers=headers)
                status = response.status_code
            else:
                async with aio.get(url, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
        except Exception:
            status = 0
        elapsed = time.perf_counter() - scheduled
        if status == 200:
            latencies[str(target["name"])].append(elapsed * 1000)
        else:
            errors[str(target["name"])] += 1

    # Warm-up: a few requests per target so connection setup is not measured.
    for target in targets:
        for _ in range(WARMUP):
            await one(target, time.perf_counter())
    for values in latencies.values():
        values.clear()
    start = time.perf_counter() + 0.1
    tasks = [asyncio.create_task(one(targets[n % len(targets)], start + n / rate)) for n in range(total)]
    await asyncio.gather(*tasks)
    await aio.close()
    await hx.aclose()
    latencies["_errors"] = [float(errors[k]) for k in errors]
    return latencies


def loadgen_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = asyncio.run(_load(spec["targets"], spec["rate"], spec["seconds"], spec.get("client", "aiohttp")))
    print(json.dumps(result))


def _run_loadgen(targets: list[dict[str, object]], rate: float, seconds: float, client: str = "aiohttp") -> dict:
    spec = STATE / "load.json"
    spec.write_text(json.dumps({"targets": targets, "rate": rate, "seconds": seconds, "client": client}))
    out = subprocess.run(
        [sys.executable, "-m", "bench.gateway_overhead", "--loadgen", str(spec)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=seconds * 4 + 60,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(values: list[float]) -> str:
    return (
        f"n={len(values):5d}  p50={_pct(values, 0.5):6.2f} ms  p90={_pct(values, 0.9):6.2f} ms  "
        f"p99={_pct(values, 0.99):6.2f} ms  mean={statistics.fmean(values):6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=240.0, help="total requests per second (all targets)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--no-client-phase", action="store_true", help="skip phase 2 (httpx against aiohttp)")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        loadgen_main(args.loadgen)
        return
    if args.rate * args.seconds > 20_000:
        parser.error("bounded: at most 20000 requests per phase")

    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    py = sys.executable
    procs = []
    service_port, jwt_port, open_port = _free_port(), _free_port(), _free_port()
    try:
        procs.append(_start([py, "-m", "services.customer", "api", "--port", str(service_port)],
                            _env(CUSTOMER_LOG_LEVEL="WARNING"), "customer"))  # fmt: skip
        common = {
            "GATEWAY_CUSTOMER_URL": f"http://127.0.0.1:{service_port}",
            "GATEWAY_RATE_LIMIT": "false",
            "GATEWAY_LOG_LEVEL": "WARNING",
        }
        procs.append(
            _start(
                [py, "-m", "gateway", "--port", str(jwt_port)],
                _env(**common, GATEWAY_DATABASE_URL=f"sqlite+aiosqlite:///{STATE}/gw1.db"),
                "gateway-jwt",
            )
        )
        procs.append(_start([py, "-m", "gateway", "--port", str(open_port)],
                            _env(**common, GATEWAY_AUTH="false", GATEWAY_DATABASE_URL=f"sqlite+aiosqlite:///{STATE}/gw2.db"),
                            "gateway-open"))  # fmt: skip
        for port in (service_port, jwt_port, open_port):
            _wait(f"http://127.0.0.1:{port}/health/live")

        token = issue_token(GatewaySettings(), sub="bench", role="admin", ttl_s=3600)
        created = httpx.post(
            f"http://127.0.0.1:{jwt_port}/api/v1/customers",
            json={"name": "Bench AG", "kind": "company", "owner": "bench"},
            headers={"Authorization": f"Bearer {token}"},
        )
        created.raise_for_status()
        cid = created.json()["id"]
        path = f"/customers/{cid}"
        targets = [
            {"name": "direct", "url": f"http://127.0.0.1:{service_port}{path}", "path": path, "sign": True},
            {"name": "gateway+jwt", "url": f"http://127.0.0.1:{jwt_port}/api/v1{path}",
             "headers": {"Authorization": f"Bearer {token}"}},
            {"name": "gateway-noauth", "url": f"http://127.0.0.1:{open_port}/api/v1{path}"},
        ]  # fmt: skip
        print(f"phase 1: {args.rate:.0f} req/s for {args.seconds:.0f} s, round-robin over {len(targets)} targets")
        cpu_before = [_cpu_s(proc.pid) for proc in procs]
        result = _run_loadgen(targets, args.rate, args.seconds)
        cpu_used = [_cpu_s(proc.pid) - before for proc, before in zip(procs, cpu_before, strict=True)]
        errors = result.pop("_errors")
        for name, values in result.items():
            print(f"  {name:15s} {_summary(values)}")
        print(f"  errors per target: {errors}")
        # Each gateway serves its own target's requests (answered or failed) and calls the service once per
        # request, so the service serves all three targets' requests (and the warm-up's).
        served = [WARMUP + len(values) + int(failed) for values, failed in zip(result.values(), errors, strict=True)]
        for name, used, requests in zip(
            ("customer service", "gateway+jwt", "gateway-noauth"),
            cpu_used,
            (sum(served), served[1], served[2]),
            strict=True,
        ):
            print(f"  CPU per request {name:17s} {used / requests * 1000:6.3f} ms  ({used:.2f} s, {requests} requests)")
        d, g, o = result["direct"], result["gateway+jwt"], result["gateway-noauth"]
        print(f"  p50 ratio gateway/direct       {_pct(g, 0.5) / _pct(d, 0.5):.2f}   (target <= 1.5)")
        print(f"  p99 ratio gateway/direct       {_pct(g, 0.99) / _pct(d, 0.99):.2f}   (target <= 1.8)")
        print(f"  added p99                      {_pct(g, 0.99) - _pct(d, 0.99):.2f} ms (target <= 2.5)")
        print(f"  p99 ratio JWT on/off           {_pct(g, 0.99) / _pct(o, 0.99):.2f}   (target <= 1.10)")

        if args.no_client_phase:
            return
        print(f"phase 2: upstream client, {args.rate:.0f} req/s for {args.seconds:.0f} s straight to the service")
        client_targets = [
            {"name": "httpx", "client": "httpx", "url": targets[0]["url"], "path": path, "sign": True},
            {"name": "aiohttp", "client": "aiohttp", "url": targets[0]["url"], "path": path, "sign": True},
        ]
        result = _run_loadgen(client_targets, args.rate, args.seconds, client="mixed")
        result.pop("_errors")
        for name, values in result.items():
            print(f"  {name:15s} {_summary(values)}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
