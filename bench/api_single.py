"""One POST /interactions against its floor, with and without the direct route: ``python -m bench.api_single``.

Starts a private PostgreSQL (bench.infra: its own port and state directory, no broker), creates the
interaction service's schema and 1,000 known customers, then in this one process drives, alternately in
blocks of ``--block`` posts (``--blocks`` each, so every arrangement meets the same load):

* ``direct``: the service app as it runs (servicekit.direct: the plain case skips FastAPI's routing and
  dependency solving);
* ``framework``: the same app with the direct route left out (every request through FastAPI's router);
* ``floor``: bench.floor's bare FastAPI route validating the same body plus one prepared asyncpg INSERT.

Requests go straight into the ASGI apps, signed as the gateway signs (bench.write_path.call): no HTTP
server. Prints this process's CPU ms per post (median over the blocks) and each arrangement's ratio to the
floor; statements per post come from bench.write_path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import insert

from bench.floor import bare_fastapi
from bench.infra import Infra
from bench.write_path import CUSTOMERS, call, interaction
from servicekit import service
from servicekit.service import API, create_app
from servicekit.settings import REPO_ROOT
from services.interaction.main import SPEC
from services.interaction.models import metadata
from services.interaction.replica.models import KnownCustomer
from services.interaction.settings import InteractionSettings

INFRA = Infra(REPO_ROOT / ".state" / "bench-api-single", kafka_port=19612, pg_port=55631, port_offset=24500)
ARRANGEMENTS = ("direct", "framework", "floor")


def service_app(direct: bool) -> Any:
    settings = InteractionSettings(database_url=INFRA.database_url("interaction"))
    if direct:
        return create_app(SPEC, settings, roles=(API,))
    install = service.install_direct_routes
    service.install_direct_routes = lambda _app: None  # type: ignore[assignment]
    try:
        return create_app(SPEC, settings, roles=(API,))
    finally:
        service.install_direct_routes = install


async def run(blocks: int, size: int) -> dict[str, float]:
    apps = {"direct": service_app(True), "framework": service_app(False)}
    database = apps["direct"].state.database
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        now = datetime.now(UTC)
        rows = [{"customer_id": f"c-{i}", "version": 1, "erased": False, "updated_at": now} for i in range(CUSTOMERS)]
        await conn.execute(insert(KnownCustomer.__table__), rows)  # type: ignore[attr-defined]
    bare = bare_fastapi()
    connection = await asyncpg.connect(INFRA.database_url("interaction", driver="postgresql"))
    await connection.execute("CREATE TABLE IF NOT EXISTS floor_rows (id text PRIMARY KEY, body jsonb NOT NULL)")
    insert_row = await connection.prepare("INSERT INTO floor_rows (id, body) VALUES ($1, $2) RETURNING id")
    sent = 0

    async def block(arrangement: str) -> float:
        nonlocal sent
        bodies = [orjson.dumps(interaction(f"c-{(sent + i) % CUSTOMERS}", sent + i)) for i in range(size)]
        sent += size
        started = time.process_time()
        for body in bodies:
            if arrangement == "floor":
                status, answer = await call(bare, "/interactions", body)
                await insert_row.fetchval(str(uuid.uuid4()), body.decode())
            else:
                status, answer = await call(apps[arrangement], "/interactions", body)
            assert status == 201, answer
        return (time.process_time() - started) * 1000 / size

    cpu: dict[str, list[float]] = {name: [] for name in ARRANGEMENTS}
    direct, framework = apps["direct"], apps["framework"]
    async with direct.router.lifespan_context(direct), framework.router.lifespan_context(framework):
        for name in ARRANGEMENTS:  # warm: statements prepared, caches filled
            await block(name)
        for _ in range(blocks):
            for name in ARRANGEMENTS:
                cpu[name].append(await block(name))
    await connection.close()
    for app in apps.values():
        await app.state.database.dispose()
    return {name: statistics.median(values) for name, values in cpu.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api_single", description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=20, help="blocks per arrangement")
    parser.add_argument("--block", type=int, default=100, help="posts per block")
    args = parser.parse_args()
    with INFRA.postgres():
        load_before = os.getloadavg()[0]
        result = asyncio.run(run(args.blocks, args.block))
    print(
        f"\nload average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; {args.blocks} blocks of {args.block}"
    )
    print("| arrangement | CPU ms per post (median of blocks) | ratio to the floor |\n|---|---:|---:|")
    for name in ARRANGEMENTS:
        print(f"| {name} | {result[name]:.3f} | {result[name] / result['floor']:.2f} |")


if __name__ == "__main__":
    main()
