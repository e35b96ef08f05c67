"""`lingualift train CONFIG.yaml [--set key=value …]`."""

from __future__ import annotations


def configure(parser) -> None:
    parser.add_argument("config", help="YAML config (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set training.max_steps=10 (repeatable)")
    parser.add_argument("--data-dir", help="directory substituted for ${data_dir} in the config")


def run(args) -> int:
    from lingualift.config import load_config
    from lingualift.training import train

    config = load_config(args.config, args.overrides, data_dir=args.data_dir)
    final = train(config)
    print(f"saved {final}")
    return 0
