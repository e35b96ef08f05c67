"""lm-evaluation-harness model `lingualift`: any model `load_generator` accepts, behind lm-eval's `LM` API.

Install with `pip install 'lingualift[lm-eval]'`. Nothing else in lingualift imports this module, so
lingualift works without lm-eval. Use it as

    python -m lingualift.eval.lm_eval_plugin run --model lingualift \
        --model_args pretrained=runs/task,prompt_template=paper \
        --tasks lingualift_mgsm --include_path "$(python -c 'import lingualift.eval.lm_eval_plugin as p; print(p.TASKS_DIR)')"

(`python -m lingualift.eval.lm_eval_plugin` is lm-eval's own CLI with this model registered; plain `lm_eval`
finds it wherever `import lingualift.eval.lm_eval_plugin` ran first, or through the package's
`lm_eval.models` entry point in lm-eval versions that load model entry points.)

`generate_until` passes the task's text as the *question*: the generator applies its own prompt
template, as in `lingualift eval`. `loglikelihood` scores the continuation given the context through
the same template, so for log-likelihood tasks pass `prompt_template=plain`; `is_greedy` says whether
every continuation token is the model's top prediction (lambada-style greedy accuracy).
"""

from __future__ import annotations

import json
import logging
from importlib import resources

from lingualift.errors import LinguaLiftError

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError:  # pragma: no cover - depends on the environment
    raise LinguaLiftError("the lm-eval plugin needs lm-eval: pip install 'lingualift[lm-eval]'") from None

logger = logging.getLogger(__name__)

TASKS_DIR = str(resources.files("lingualift").joinpath("resources/lm_eval_tasks"))


@register_model("lingualift")
class LinguaLiftLM(LM):
    """lm-eval model arguments: pretrained (checkpoint dir / hub id / preset), prompt_template, device,
    dtype, batch_size, max_gen_toks (default for tasks that do not set it), backend (hf, vllm or llamacpp; vllm
    needs scripts/vllm_env.sh, llamacpp scripts/llamacpp_env.sh), tensor_parallel_size and vllm_lora (merge or
    request) for the vllm backend, precision (f32, f16, q8_0) for the llamacpp backend."""

    def __init__(self, pretrained: str, prompt_template: str | None = None, device: str | None = None,
                 dtype: str | None = None, batch_size: int | str = 16, max_gen_toks: int = 512, backend: str = "hf",
                 tensor_parallel_size: int | str = 1, vllm_lora: str = "merge", precision: str | None = None,
                 **unused):
        super().__init__()
        import torch

        from lingualift.inference.generators import load_generator

        if device and device.startswith("cuda") and not torch.cuda.is_available():
            logger.warning("lm-eval asked for device %s but CUDA is unavailable; using the CPU", device)
            device = "cpu"
        if unused:
            logger.info("ignoring lm-eval arguments %s", sorted(unused))
        options = {}
        if backend == "vllm":
            options = {"tensor_parallel_size": int(tensor_parallel_size), "lora": vllm_lora}
        elif backend == "llamacpp":
            options = {"precision": precision} if precision else {}
            if device and device != "cpu":
                logger.warning("the llamacpp backend runs on the CPU; ignoring lm-eval's device %s", device)
            device = None
        elif precision:
            raise LinguaLiftError("the lm-eval argument precision only applies to backend=llamacpp")
        self.generator = load_generator(pretrained, prompt_template=prompt_template, device=device, dtype=dtype,
                                        backend=backend, **options)
        self.batch_size = 16 if str(batch_size).startswith("auto") else int(batch_size)
        self.max_gen_toks = int(max_gen_toks)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy/sampled generation; requests sharing generation settings are batched together."""
        outputs: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(index)
        for key, indices in groups.items():
            kwargs = json.loads(key)
            until = kwargs.get("until") or []
            texts = self.generator.generate(
                [requests[i].args[0] for i in indices],
                max_new_tokens=int(kwargs.get("max_gen_toks", self.max_gen_toks)),
                stop=[until] if isinstance(until, str) else list(until),
                do_sample=bool(kwargs.get("do_sample", False)),
                temperature=float(kwargs.get("temperature", 1.0) or 1.0),
                top_p=float(kwargs.get("top_p", 1.0)),
                batch_size=self.batch_size,
                progress=not disable_tqdm,
            )
            for i, text in zip(indices, texts):
                outputs[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return outputs

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        contexts = [r.args[0] for r in requests]
        continuations = [r.args[1] for r in requests]
        # log P(continuation | context): the continuation's own tokens, no end-of-sequence after them.
        scores = self.generator.target_nll(contexts, continuations, batch_size=self.batch_size, end_of_sequence=False)
        return [(-score.nll, score.greedy) for score in scores]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        texts = [r.args[0] for r in requests]
        scores = self.generator.target_nll([None] * len(texts), texts, batch_size=self.batch_size,
                                           end_of_sequence=False)
        return [-score.nll for score in scores]


def main() -> None:
    """lm-eval's command line with the `lingualift` model registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
