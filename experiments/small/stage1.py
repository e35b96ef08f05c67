"""Stage-1 set-up shared by probe.py and scale.py: the default pair, only the alignment layer trainable,
and a scorer that uses the training collator (scored targets: see `truncate_targets`)."""

from lingualift.data.instructions import BridgeCollator
from lingualift.data.prompts import chat_template_affixes
from lingualift.inference.generators import BridgeGenerator
from lingualift.model.modeling import LinguaLiftModel
from lingualift.train.stages import apply_freeze_policy


def build_stage1(args):
    """`(model, collator, generator)` from the scripts' shared flags (LLM, alignment, input norm, output scale,
    chat template)."""
    alignment_kwargs = {"input_norm": not args.no_input_norm}
    if getattr(args, "output_scale", None):
        value = args.output_scale
        alignment_kwargs["output_scale"] = value if value == "embedding_rms" else float(value)
    model = LinguaLiftModel.from_components(
        "default", getattr(args, "llm", "default"), args.alignment, seed=0, prompt_template="plain",
        encoder_max_length=128, alignment_kwargs=alignment_kwargs)
    if args.chat_template:
        model.config.llm_prefix, model.config.llm_suffix = chat_template_affixes(model.llm_tokenizer)
    apply_freeze_policy(model.parameter_groups(), ("alignment",))
    collator = BridgeCollator.for_model(model, max_target_length=args.max_target_length)
    generator = BridgeGenerator(model, prompt_template="plain", name=args.name, device="cpu")
    generator.collator = collator  # score the same (truncated) targets that are trained
    return model, collator, generator


def truncate_targets(tokenizer, texts, max_target_length: int) -> list[str]:
    """Scored targets: the first `max_target_length - 1` tokens, so that the bridge and the text-reading
    reference score the same tokens plus an end-of-sequence (as every committed gap in these experiments was
    measured; the gap compares right with mismatched questions on identical targets)."""
    return [tokenizer.decode(tokenizer(t, add_special_tokens=False).input_ids[: max_target_length - 1]) for t in texts]
