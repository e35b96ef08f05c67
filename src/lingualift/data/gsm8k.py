"""GSM8K's answer format, owned in one place: a worked solution with `<<calc>>` annotations ending in `#### N`.

Training data (stage 2, SFT, the pipeline's data phase), the task reader and the transfer diagnostic all
read it the same way.
"""

from __future__ import annotations

import re

_CALC = re.compile(r"<<[^>]*>>")
FINAL_MARK = "####"


def is_worked_solution(answer: str) -> bool:
    return FINAL_MARK in answer


def final_answer(answer: str) -> str:
    """The text after the last `####` (the gold number), or the whole answer when it has none."""
    return answer.rsplit(FINAL_MARK, 1)[1].strip() if is_worked_solution(answer) else answer.strip()


def english_solution(answer: str) -> str:
    """The worked solution without calculator annotations, ending MetaMath-style ("The answer is: N")."""
    body, _, final = _CALC.sub("", answer).rpartition(FINAL_MARK)
    return f"{body.strip()}\nThe answer is: {final.strip()}" if body else answer.strip()
