"""A small fake implementing the `inference.Generator` protocol, for fast, exact unit tests."""

from __future__ import annotations

import re

import torch

from lingualift.inference.generators import TargetScore


class FakeGenerator:
    """Answers "The answer is N" where N is the first number of the question plus one (so some are right);
    NLL falls with the number of question words shared with the target (greedy when all are shared);
    embeddings are bag-of-digits."""

    name = "fake"
    backend = "hf"
    dtype = "float32"
    prompt_template = "Q: {question}\nA:"

    def __init__(self, fail_after_calls: int | None = None):
        self.calls: list[list[str]] = []
        self.scored_end_of_sequence: list[bool] = []  # per target_nll call: whether an eos was scored too
        self.fail_after_calls = fail_after_calls

    def rendered_prompt(self, question):
        return self.prompt_template.replace("{question}", question)

    def generate(self, questions, *, max_new_tokens=512, stop=None, do_sample=False, temperature=1.0, top_p=1.0,
                 batch_size=16, progress=False):
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise KeyboardInterrupt("simulated kill")
        self.calls.append(list(questions))
        outputs = []
        for question in questions:
            numbers = re.findall(r"\d+", question)
            outputs.append(f"The answer is {int(numbers[0]) + 1}." if numbers else "no idea")
        return outputs

    def target_nll(self, questions, targets, *, batch_size=8, end_of_sequence=True):
        self.scored_end_of_sequence.append(end_of_sequence)
        results = []
        for question, target in zip(questions, targets):
            words = target.split()
            shared = len(set(words) & set((question or "").split()))
            results.append(TargetScore(2.0 * len(words) - shared, len(words), greedy=shared == len(words)))
        return results

    def prompt_embeddings(self, questions, *, batch_size=16):
        vectors = torch.zeros(len(questions), 10)
        for row, question in enumerate(questions):
            for digit in re.findall(r"\d", question):
                vectors[row, int(digit)] += 1
        return vectors + 0.01
