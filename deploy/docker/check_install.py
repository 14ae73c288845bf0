"""Build-time guard for deploy/Dockerfile: every shipped source file must be in the installed package.

`pip install .` installs only what setuptools' package discovery and package-data select. A
directory without an __init__.py (for example an Alembic `migrations/versions/` folder) or a data
file of a type not listed in pyproject's package-data is silently left out, and the image then
fails at run time (e.g. `migrate` finds no revisions). This script fails the build instead.

Usage (inside the build stage, from a directory outside the source tree):
    python /src/deploy/docker/check_install.py /src
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

PACKAGES = ("servicekit", "contracts", "runner", "services", "gateway")
# Must match [tool.setuptools.package-data] in pyproject.toml, plus the Python sources.
SHIPPED_SUFFIXES = {".py", ".mako", ".ini", ".json", ".yaml"}


def main(src_root: str) -> int:
    src = Path(src_root)
    site = Path(sysconfig.get_paths()["purelib"])
    missing: list[str] = []
    for package in PACKAGES:
        if not (src / package).is_dir():
            missing.append(f"{package}/ (package directory absent from the build context)")
            continue
        for path in sorted((src / package).rglob("*")):
            rel = path.relative_to(src)
            if not path.is_file() or "__pycache__" in rel.parts or path.suffix not in SHIPPED_SUFFIXES:
                continue
            if not (site / rel).exists():
                missing.append(str(rel))
    if missing:
        print("check_install: files in the source tree that `pip install .` did not install:", file=sys.stderr)
        for rel in missing:
            print(f"  {rel}", file=sys.stderr)
        print("(add an __init__.py to the folder, or the file type to package-data in pyproject.toml)", file=sys.stderr)
        return 1
    print(f"check_install: {', '.join(PACKAGES)} installed completely into {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/src"))
