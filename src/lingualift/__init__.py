"""LinguaLIFT: make a decoder LLM reason in low-resource languages from English-only task data.

A frozen multilingual encoder reads the prompt; a small language alignment layer maps its states into
the LLM's embedding space as a soft prompt. Stage 1 trains the alignment layer on code-switched
English; stage 2 fine-tunes the LLM on English task data. See README.md and docs/.
"""

__version__ = "0.1.0"

import os as _os

# OpenMP threads that spin while waiting make a shared or oversubscribed CPU run 4-8x slower (greedy
# decoding: 1-2 vs 9 tokens/s on 2 busy cores, docs/performance.md); sleeping waiters matter little on an
# idle one. libgomp reads this when torch loads, so it is set before any torch import; an explicit value wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from lingualift.errors import LinguaLiftError

__all__ = ["LinguaLiftError", "LinguaLiftConfig", "LinguaLiftModel", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import lingualift` (and the CLI's --help) does not pay for importing torch.
    if name in ("LinguaLiftConfig", "LinguaLiftModel"):
        from lingualift.model import modeling

        return getattr(modeling, name)
    raise AttributeError(name)
