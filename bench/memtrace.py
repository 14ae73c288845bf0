"""Run a platform process under tracemalloc: ``python -m bench.memtrace --out DIR -- services.x consume``.

The soak (``python -m bench.soak --trace-memory retention-consumer``) starts the named process through this
wrapper instead of directly: tracemalloc starts before the service's first import, and a thread writes a
snapshot (the traces, filtered of tracemalloc's own and the import machinery's) to DIR every S seconds, plus
the process's RSS and traced total at that moment, so that what grew between any two moments of a real run
(aiokafka, the HTTP server, the housekeeping loops included) can be compared allocation site by allocation
site (``compare``). The process itself runs as ``python -m services.x ...`` would.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.cacheprobe import prober, watch_engines
from bench.infra import rss_mib


def snapshot() -> tracemalloc.Snapshot:
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    )


def dumper(out: Path, every_s: float, started: float) -> None:
    n = 0
    while True:
        time.sleep(every_s)
        n += 1
        # RSS and the traced total before the snapshot, whose own objects are traced too.
        meta = {
            "n": n,
            "t_s": round(time.monotonic() - started, 1),
            "at": time.time(),
            "rss_mib": round(rss_mib(os.getpid()), 1),
            "traced_mib": round(tracemalloc.get_traced_memory()[0] / 2**20, 2),
        }
        snap = snapshot()
        with (out / f"snapshot-{n:04d}.pickle").open("wb") as f:
            pickle.dump(snap, f, protocol=pickle.HIGHEST_PROTOCOL)
        del snap
        with (out / "marks.jsonl").open("a") as f:
            f.write(json.dumps(meta) + "\n")


def where(stat: tracemalloc.StatisticDiff) -> str:
    """The allocating frame first, then its callers."""
    frames = [f"{Path(frame.filename).name}:{frame.lineno}" for frame in reversed(stat.traceback)]
    return " < ".join(frames[:5])


def compare(out: Path, first: int, last: int, top: int = 15) -> dict[str, Any]:
    """What grew between two snapshots, by allocation site (the deepest frames first)."""
    marks = {m["n"]: m for m in map(json.loads, (out / "marks.jsonl").read_text().splitlines())}
    with (out / f"snapshot-{first:04d}.pickle").open("rb") as f:
        a: tracemalloc.Snapshot = pickle.load(f)
    with (out / f"snapshot-{last:04d}.pickle").open("rb") as f:
        b: tracemalloc.Snapshot = pickle.load(f)
    stats = b.compare_to(a, "traceback")
    stats.sort(key=lambda s: s.size_diff, reverse=True)
    return {
        "from": marks.get(first),
        "to": marks.get(last),
        "grown": [
            {"kib": round(s.size_diff / 1024, 1), "blocks": s.count_diff, "at": where(s)}
            for s in stats[:top]
            if s.size_diff > 0
        ],
        "shrunk_kib": round(sum(s.size_diff for s in stats if s.size_diff < 0) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memtrace", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the snapshots")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between snapshots")
    parser.add_argument("--frames", type=int, default=8, help="frames kept per allocation")
    parser.add_argument("--no-snapshots", action="store_true", help="no tracemalloc (its cost), the probe only")
    parser.add_argument(
        "--probe-every", type=float, default=0.0, help="seconds between statement-cache probes (0: none)"
    )
    parser.add_argument("module", help="the module to run, e.g. services.retention")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="its arguments")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (args.out / "marks.jsonl").unlink()
    started = time.monotonic()
    if not args.no_snapshots:
        tracemalloc.start(args.frames)
        threading.Thread(target=dumper, args=(args.out, args.every, started), daemon=True).start()
    if args.probe_every > 0:
        with contextlib.suppress(FileNotFoundError):
            (args.out / "probes.jsonl").unlink()
        watch_engines()
        rss = lambda: round(rss_mib(os.getpid()), 1)  # noqa: E731
        threading.Thread(target=prober, args=(args.out, args.probe_every, started, rss), daemon=True).start()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    sys.argv = [args.module, *rest]
    runpy.run_module(args.module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
