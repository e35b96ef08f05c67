"""Export step checkpoints of a stage-1 run as loadable models, for the fidelity-vs-example-passes curve.

    PYTHONPATH=src python experiments/qwen05b/export_steps.py runs/qwen05b/lingualift_align_mixed \
        --steps 50,100,200,400,800,1800 --data-dir ../shared/data

writes RUN/exported/step-N (a stage-1 model like RUN/final: the alignment layer plus references to the frozen
encoder and LLM), which `lingualift diagnose --model` and the fidelity measure read. The example-passes of step N
are in RUN/train_log.jsonl (`example_passes`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lingualift.checkpoint import step_checkpoint_dir
from lingualift.train.loop import export_step_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the run's training.output_dir")
    parser.add_argument("--steps", required=True, help="comma-separated steps that have a step checkpoint")
    parser.add_argument("--data-dir", help="data directory (for muse:XX lexicon specs in the run's config)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for step in (int(value) for value in args.steps.split(",")):
        destination = Path(args.run) / "exported" / f"step-{step}"
        if destination.is_dir():
            continue
        export_step_checkpoint(step_checkpoint_dir(args.run, step), destination, data_dir=args.data_dir)


if __name__ == "__main__":
    main()
