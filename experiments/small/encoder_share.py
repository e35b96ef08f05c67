"""Share of a stage-1 step spent in the frozen encoder: the most that caching its outputs could save.

    python experiments/small/encoder_share.py [DATA_DIR]

Batch 8 of GSM8K train questions, targets truncated to 24 tokens, one torch thread (as in scale.py);
the first of six batches is a warm-up and not counted.
"""

import sys
import time

import torch

from lingualift.data.instructions import BridgeCollator, PromptTarget, read_instructions
from lingualift.data.gsm8k import english_solution
from lingualift.model.modeling import LinguaLiftModel
from lingualift.train.stages import apply_freeze_policy

torch.set_num_threads(1)
torch.manual_seed(0)
data_dir = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
model = LinguaLiftModel.from_components("default", "default", "mlp", seed=0, prompt_template="plain",
                                        encoder_max_length=128, alignment_kwargs={"input_norm": True})
apply_freeze_policy(model.parameter_groups(), ("alignment",))
collator = BridgeCollator.for_model(model, max_target_length=24)
records = list(read_instructions(f"{data_dir}/gsm8k/train.jsonl", limit=48))
encoder_seconds, step_seconds = [], []
for index in range(6):
    batch = collator([PromptTarget(r["question"], english_solution(r["answer"])) for r in records[index * 8 : index * 8 + 8]])
    start = time.perf_counter()
    with torch.no_grad():
        model.encode(batch["encoder_input_ids"], batch["encoder_attention_mask"])
    encoded = time.perf_counter()
    model(**batch, targets_only=True).loss.backward()  # a whole step's forward and backward, encoder included
    model.zero_grad()
    if index:
        encoder_seconds.append(encoded - start)
        step_seconds.append(time.perf_counter() - encoded)
print(f"encoder {sum(encoder_seconds) / 5:.3f} s of a {sum(step_seconds) / 5:.3f} s step "
      f"({sum(encoder_seconds) / sum(step_seconds):.1%}); soft-prompt tokens per question "
      f"{batch['encoder_attention_mask'].sum(1).tolist()}")
