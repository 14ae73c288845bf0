"""Starts the whole platform as separate processes: ``python -m servicekit.launcher``.

`make run` and the end-to-end tests use this same launcher. Each process's output is prefixed with
its name (or written to a log file per process), and stopping is clean: SIGTERM, a grace period, then
SIGKILL, and the local Kafka broker is stopped only if this launcher started it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from servicekit.settings import GATEWAY_PORT, REPO_ROOT, SERVICE_PORTS, state_dir

SERVICES = SERVICE_PORTS  # the services the launcher starts, by default port
KAFKA_SCRIPT = REPO_ROOT / "deploy" / "kafka.sh"
_COLOURS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m"]


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Running:
    spec: ProcessSpec
    popen: subprocess.Popen[bytes]
    log_path: Path | None


def platform_processes(
    *,
    database_urls: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    port_offset: int = 0,
) -> list[ProcessSpec]:
    """The four services (API + relay + consumer each) and the gateway; port_offset lets tests run beside `make run`."""
    python = sys.executable
    ports = {name: port + port_offset for name, port in SERVICES.items()}
    specs = []
    for name, port in ports.items():
        env = {f"{name.upper()}_PORT": str(port)}
        if database_urls and name in database_urls:
            env[f"{name.upper()}_DATABASE_URL"] = database_urls[name]
        if name == "interaction":  # asks the customer service when its replica lags
            env["INTERACTION_CUSTOMER_URL"] = f"http://127.0.0.1:{ports['customer']}"
        specs.append(ProcessSpec(name, [python, "-m", f"services.{name}", "all"], port, env))
    gateway_env = {"GATEWAY_PORT": str(GATEWAY_PORT + port_offset)}
    if database_urls and "gateway" in database_urls:  # keys, rate buckets, audit log
        gateway_env["GATEWAY_DATABASE_URL"] = database_urls["gateway"]
    gateway_env.update({f"GATEWAY_{name.upper()}_URL": f"http://127.0.0.1:{port}" for name, port in ports.items()})
    specs.append(ProcessSpec("gateway", [python, "-m", "gateway"], GATEWAY_PORT + port_offset, gateway_env))
    # The secret the gateway signs its calls into the services with: random per run unless configured,
    # so the well-known development default never guards a running platform.
    shared = {}
    if "CRM_INTERNAL_TOKEN" not in os.environ and "CRM_INTERNAL_TOKEN" not in (extra_env or {}):
        shared["CRM_INTERNAL_TOKEN"] = secrets.token_urlsafe(32)
    for spec in specs:
        spec.env.update(shared)
        spec.env.update(extra_env or {})
    return specs


class Platform:
    """A set of processes started and stopped together."""

    def __init__(
        self, specs: Sequence[ProcessSpec], *, log_dir: Path | None = None, base_env: Mapping[str, str] | None = None
    ):
        self.specs = {s.name: s for s in specs}
        self.log_dir = log_dir
        self.base_env = dict(base_env if base_env is not None else os.environ)
        self.running: dict[str, Running] = {}
        self._print_lock = threading.Lock()

    # ---- processes ----------------------------------------------------------------------------------

    def start(self, name: str, *, env: Mapping[str, str] | None = None, argv: Sequence[str] | None = None) -> None:
        spec = self.specs[name]
        full_env = {**self.base_env, **spec.env, **(env or {})}
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            out = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed by the OS
            popen = subprocess.Popen(
                list(argv or spec.argv), env=full_env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT
            )
            out.close()
        else:
            popen = subprocess.Popen(
                list(argv or spec.argv), env=full_env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            threading.Thread(target=self._pump, args=(name, popen), daemon=True).start()
        self.running[name] = Running(spec, popen, log_path)

    def start_all(self) -> None:
        for name in self.specs:
            self.start(name)

    def _pump(self, name: str, popen: subprocess.Popen[bytes]) -> None:
        colour = _COLOURS[list(self.specs).index(name) % len(_COLOURS)] if sys.stdout.isatty() else ""
        reset = "\033[0m" if colour else ""
        prefix = f"{colour}{name:<11}|{reset} "
        assert popen.stdout is not None
        for line in iter(popen.stdout.readline, b""):
            with self._print_lock:
                sys.stdout.write(prefix + line.decode(errors="replace"))
                sys.stdout.flush()

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would."""
        running = self.running.pop(name, None)
        if running and running.popen.poll() is None:
            running.popen.kill()
            running.popen.wait()

    def stop(self, name: str, grace_s: float = 15.0) -> None:
        running = self.running.pop(name, None)
        if running is None or running.popen.poll() is not None:
            return
        running.popen.send_signal(signal.SIGTERM)
        try:
            running.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            running.popen.kill()
            running.popen.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)

    def exited(self) -> dict[str, int]:
        return {n: r.popen.returncode for n, r in self.running.items() if r.popen.poll() is not None}

    def log_tail(self, name: str, lines: int = 40) -> str:
        running = self.running.get(name)
        path = running.log_path if running else (self.log_dir / f"{name}.log" if self.log_dir else None)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # ---- readiness ----------------------------------------------------------------------------------

    def wait_ready(self, names: Sequence[str] | None = None, timeout_s: float = 90.0) -> None:
        pending = list(names or self.running)
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while pending:
                name = pending[0]
                running = self.running.get(name)
                if running is not None and running.popen.poll() is not None:
                    raise RuntimeError(f"{name} exited with {running.popen.returncode}\n{self.log_tail(name)}")
                port = self.specs[name].port
                try:
                    if client.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                        pending.pop(0)
                        continue
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready after {timeout_s:.0f}s\n{self.log_tail(name)}")
                time.sleep(0.2)


def kafka(command: str) -> None:
    subprocess.run(["bash", str(KAFKA_SCRIPT), command], check=True)


def kafka_running() -> bool:
    return subprocess.run(["bash", str(KAFKA_SCRIPT), "status"], capture_output=True).returncode == 0


def ensure_topics() -> None:
    subprocess.run([sys.executable, "-m", "servicekit.topics", "ensure"], check=True, cwd=REPO_ROOT)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m servicekit.launcher", description="Run the whole platform locally."
    )
    parser.add_argument("--external-kafka", action="store_true", help="use KAFKA_BOOTSTRAP_SERVERS, start no broker")
    args = parser.parse_args(argv)

    started_kafka = False
    if not args.external_kafka and not kafka_running():
        kafka("start")
        started_kafka = True
    ensure_topics()
    platform = Platform(platform_processes())
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        platform.start_all()
        platform.wait_ready()
        gateway = f"http://127.0.0.1:{GATEWAY_PORT}/api/v1"
        print(f"\nplatform ready: gateway {gateway}  (data in {state_dir()}; Ctrl-C stops)\n", flush=True)
        while not stopping.is_set():
            if crashed := platform.exited():
                print(f"process exited: {crashed}; stopping", file=sys.stderr, flush=True)
                break
            stopping.wait(0.5)
    finally:
        print("stopping...", flush=True)
        platform.stop_all()
        if started_kafka:
            kafka("stop")


if __name__ == "__main__":
    main()
