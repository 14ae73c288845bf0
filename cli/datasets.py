"""Sample data sets, fetched on first use and cached under ~/.cache/crm-platform/datasets.

CDNOW_sample.txt (Fader & Hardie's CDNOW sample: 6,919 purchases of 2,357 customers, Jan 1997 - Jun
1998) ships inside the `lifetimes` wheel on PyPI. `lifetimes` itself is unmaintained and pulls heavy
dependencies, so it is never installed: pip downloads the pinned wheel without dependencies, the one
file is read out of it and checked against its SHA-256.

    python -m cli.datasets cdnow      # prints the path of the cached file (fetching it if needed)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

LIFETIMES_VERSION = "0.11.3"
CDNOW_MEMBER = "lifetimes/datasets/CDNOW_sample.txt"
CDNOW_SHA256 = "6fae10155c0b0ba363c2c386e30f77990d22328220efd862a5edd1443420d94a"
CDNOW_FILE = "CDNOW_sample.txt"
# In a checkout, the same file (same SHA-256) is kept for the tests; used before any download.
CHECKOUT_COPY = Path(__file__).resolve().parent.parent / "tests" / "data" / CDNOW_FILE


class DatasetUnavailable(RuntimeError):
    pass


def cache_dir() -> Path:
    """CRM_CACHE_DIR, else ~/.cache/crm-platform (the same cache the Kafka jars use)."""
    root = os.environ.get("CRM_CACHE_DIR") or Path.home() / ".cache" / "crm-platform"
    return Path(root) / "datasets"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extract_cdnow(wheel: Path) -> bytes:
    """CDNOW_sample.txt out of a lifetimes wheel, verified."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(CDNOW_MEMBER)
        except KeyError:
            raise DatasetUnavailable(f"{wheel.name} has no {CDNOW_MEMBER}") from None
    if _sha256(data) != CDNOW_SHA256:
        raise DatasetUnavailable(f"{CDNOW_MEMBER} in {wheel.name} does not have the expected SHA-256")
    return data


def cdnow_sample(*, refresh: bool = False) -> Path:
    """The path of a verified CDNOW_sample.txt: the cache, the checkout's test copy, else downloaded."""
    target = cache_dir() / CDNOW_FILE
    if not refresh:
        for candidate in (target, CHECKOUT_COPY):
            if candidate.is_file() and _sha256(candidate.read_bytes()) == CDNOW_SHA256:
                return candidate
    with tempfile.TemporaryDirectory(prefix="crm-datasets-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"lifetimes=={LIFETIMES_VERSION}",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "--dest",
            tmp,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise DatasetUnavailable(
                f"could not download lifetimes=={LIFETIMES_VERSION} from PyPI with pip "
                f"({result.stderr.strip()[-300:] or 'no wheel'}); pass the file explicitly instead"
            )
        data = extract_cdnow(wheels[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)  # atomic: a concurrent reader never sees half a file
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["cdnow"]:
        print("usage: python -m cli.datasets cdnow", file=sys.stderr)
        return 2
    try:
        print(cdnow_sample())
    except DatasetUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
