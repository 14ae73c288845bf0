"""Starts the whole platform as separate processes: ``python -m runner.launcher``.

`make run` and the end-to-end tests use this same launcher. Each process's output is prefixed with
its name (or written to a log file per process), and stopping is clean: SIGTERM, a grace period, then
SIGKILL, and the local Kafka broker is stopped only if this launcher started it.

Under `make run` a Supervisor restarts a process that dies, as supervisord or systemd would: exponential
backoff with a cap, the backoff forgotten after a stable run, and a process that keeps failing at once
(a bad setting, a port in use) given up on with a message instead of restarted forever. It records what
runs in <state>/platform.json for `make status` (runner.status).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from servicekit.settings import GATEWAY_PORT, REPO_ROOT, SERVICE_PORTS, PlatformSettings, state_dir

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
    started_at: float = field(default_factory=time.monotonic)


def allocator_env(roles: str, settings: PlatformSettings | None = None) -> dict[str, str]:
    """The allocator a process starts with (PYTHONMALLOC is read only at start-up, so it goes in the process's
    environment): CRM_CONSUMER_PYTHONMALLOC for a process whose roles (e.g. "consume", "api,relay", "all")
    include consuming; nothing otherwise, or when it is empty."""
    chosen = (settings or PlatformSettings()).consumer_pythonmalloc
    runs = {role.strip() for role in roles.split(",")}
    return {"PYTHONMALLOC": chosen} if chosen and runs & {"consume", "all"} else {}


# How a service's roles are spread over processes (CRM_LAYOUT): (name suffix, roles, port offset) per process.
LAYOUTS: dict[str, list[tuple[str, str, int]]] = {
    "split": [("", "api", 0), ("-relay", "relay", 100), ("-consumer", "consume", 200)],
    "combined": [("", "all", 0)],
    "consumer-apart": [("", "api,relay", 0), ("-consumer", "consume", 200)],
}


def platform_processes(
    *,
    database_urls: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    port_offset: int = 0,
    layout: str | None = None,
) -> list[ProcessSpec]:
    """The four services' processes and the gateway; port_offset lets tests run beside `make run`.

    layout: how each service's roles are spread over processes (LAYOUTS; default CRM_LAYOUT, "combined":
    API, relay and consumer in one process per service). A process's health is served on its own port.
    """
    python = sys.executable
    layout = layout or PlatformSettings().layout
    ports = {name: port + port_offset for name, port in SERVICES.items()}
    specs = []
    for name, port in ports.items():
        env = {f"{name.upper()}_PORT": str(port)}
        if database_urls and name in database_urls:
            env[f"{name.upper()}_DATABASE_URL"] = database_urls[name]
        if name == "interaction":  # asks the customer service when its replica lags
            env["INTERACTION_CUSTOMER_URL"] = f"http://127.0.0.1:{ports['customer']}"
        if name == "retention":  # reads a campaign's audience from the scoring service's segments
            env["RETENTION_SCORING_URL"] = f"http://127.0.0.1:{ports['scoring']}"
        for suffix, roles, offset in LAYOUTS[layout]:
            # The roles stay the last argument: a test or operator restarting one process swaps only them.
            argv = [python, "-m", f"services.{name}", "--port", str(port + offset), roles]
            specs.append(ProcessSpec(f"{name}{suffix}", argv, port + offset, env | allocator_env(roles)))
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


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a crashed process. Defaults: 1 s, 2 s, 4 s ... up to 30 s between tries."""

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 30.0
    # A run at least this long was healthy: the next crash starts the backoff from initial_s again.
    stable_after_s: float = 60.0
    # A run shorter than this is an immediate failure; this many in a row means restarting cannot help.
    immediate_s: float = 5.0
    max_immediate_failures: int = 5


@dataclass(frozen=True)
class RestartState:
    crashes: int = 0  # crashes since the last stable run
    immediate: int = 0  # immediate failures in a row


def next_restart(policy: RestartPolicy, state: RestartState, uptime_s: float) -> tuple[RestartState, float | None]:
    """After a process crashed having run `uptime_s`: the new state and the delay before restarting it,
    or None for "give up" (max_immediate_failures immediate failures in a row)."""
    if uptime_s >= policy.stable_after_s:
        state = RestartState()
    immediate = state.immediate + 1 if uptime_s < policy.immediate_s else 0
    crashes = state.crashes + 1
    new = RestartState(crashes=crashes, immediate=immediate)
    if immediate >= policy.max_immediate_failures:
        return new, None
    return new, min(policy.initial_s * policy.factor ** (crashes - 1), policy.max_s)


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
        self.running[name] = Running(spec, popen, log_path, time.monotonic())

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


class Supervisor:
    """Restarts the platform's crashed processes by a RestartPolicy; call poll() every fraction of a second.

    Only processes that exit on their own are restarted: Platform.stop/kill remove a process from
    `running` first, so a deliberate stop is never undone.
    """

    def __init__(
        self,
        platform: Platform,
        policy: RestartPolicy | None = None,
        *,
        status_file: Path | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.platform = platform
        self.policy = policy or RestartPolicy()
        self.status_file = status_file
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.states: dict[str, RestartState] = {}
        self.restarts: dict[str, int] = {}
        self.due: dict[str, float] = {}  # name -> time.monotonic() of its next start
        self.given_up: dict[str, int] = {}  # name -> its last exit code

    def poll(self) -> None:
        now = time.monotonic()
        changed = False
        for name, running in list(self.platform.running.items()):
            code = running.popen.poll()
            if code is None or name in self.due or name in self.given_up:
                continue
            uptime = now - running.started_at
            self.states[name], delay = next_restart(self.policy, self.states.get(name, RestartState()), uptime)
            changed = True
            if delay is None:
                self.given_up[name] = code
                self.say(
                    f"{name} failed {self.states[name].immediate} times in a row within "
                    f"{self.policy.immediate_s:g}s of starting (last exit code {code}); not restarting it. "
                    f"Fix the cause (its log above), then restart the platform."
                )
                continue
            self.due[name] = now + delay
            self.say(f"{name} exited with {code} after {uptime:.1f}s; restarting in {delay:g}s")
        for name, at in list(self.due.items()):
            if now >= at:
                del self.due[name]
                self.platform.start(name)
                self.restarts[name] = self.restarts.get(name, 0) + 1
                changed = True
        if changed:
            self.write_status()

    def write_status(self) -> None:
        """<state>/platform.json: each process's pid, port, state and restarts, for `make status`."""
        if self.status_file is None:
            return
        processes = {}
        for name, spec in self.platform.specs.items():
            running = self.platform.running.get(name)
            alive = running is not None and running.popen.poll() is None
            state = (
                "running"
                if alive
                else "fatal"
                if name in self.given_up
                else "backoff"
                if name in self.due
                else "exited"
            )
            processes[name] = {
                "pid": running.popen.pid if running else None,
                "port": spec.port,
                "state": state,
                "restarts": self.restarts.get(name, 0),
            }
        body = {"launcher_pid": os.getpid(), "updated_at": time.time(), "processes": processes}
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2))
        tmp.replace(self.status_file)


def status_file() -> Path:
    return state_dir() / "platform.json"


def kafka(command: str) -> None:
    subprocess.run(["bash", str(KAFKA_SCRIPT), command], check=True)


def kafka_running() -> bool:
    return subprocess.run(["bash", str(KAFKA_SCRIPT), "status"], capture_output=True).returncode == 0


def ensure_topics() -> None:
    subprocess.run([sys.executable, "-m", "runner.topic_setup", "ensure"], check=True, cwd=REPO_ROOT)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.launcher", description="Run the whole platform locally.")
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
    supervisor = Supervisor(platform, status_file=status_file())
    try:
        platform.start_all()
        supervisor.write_status()
        try:
            platform.wait_ready()
            gateway = f"http://127.0.0.1:{GATEWAY_PORT}/api/v1"
            print(
                f"\nplatform ready: gateway {gateway}  (data in {state_dir()}; Ctrl-C stops; make status)\n", flush=True
            )
        except (RuntimeError, TimeoutError) as exc:  # the supervisor below restarts what died
            print(f"platform not ready: {exc}", file=sys.stderr, flush=True)
        while not stopping.is_set():
            supervisor.poll()  # a crashed process comes back with backoff (RestartPolicy)
            stopping.wait(0.5)
    finally:
        print("stopping...", flush=True)
        platform.stop_all()
        status_file().unlink(missing_ok=True)
        if started_kafka:
            kafka("stop")


if __name__ == "__main__":
    main()
