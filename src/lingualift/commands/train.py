"""`lingualift train CONFIG.yaml [--set key=value …]`."""

from __future__ import annotations


def configure(parser) -> None:
    parser.add_argument("config", help="a YAML file, or the name of a packaged config (tiny/align, tiny/task, tiny/task_lora, tiny/sft, "
                        "tiny/langbridge, paper/align, paper/task)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set training.max_steps=10 (repeatable)")
    parser.add_argument("--data-dir", help="directory substituted for ${data_dir} in the config")


def run(args) -> int:
    from lingualift.train.config import load_config
    from lingualift.train.loop import train

    config = load_config(args.config, args.overrides, data_dir=args.data_dir)
    final = train(config)
    print(f"saved {final}")
    return 0
