"""The same check as an rlpractice verifier: `fn(completion, answer, **columns)`."""

import re

from rlpractice.grading.registry import Grade


def last_answer(completion: str, answer: str, **columns) -> Grade:
    found = re.search(r".*Answer:\s*(-?[\d.]+?)\.?(?:\s|$)", completion, re.S)
    if not found:
        return Grade(0.0, "no 'Answer: <number>'")
    try:
        ok = float(found.group(1)) == float(answer)
    except ValueError:
        return Grade(0.0, f"not a number: {found.group(1)}")
    return Grade(float(ok), f"{found.group(1)} {'==' if ok else '!='} {answer}")
