"""Speed of the Countdown textbook and verifier: what a run pays to build the book, and what grading costs,
for ordinary answers and for huge or deeply nested ones (the verifier runs in the trainer process, with no
timeout around it, so its cost must not grow with the input).

    python scripts/bench_countdown.py [--out runs/bench/countdown.json]

Builds the textbook at the sizes of conf/textbook/countdown.yaml (best of --repeats), grades its worked
solutions and as many wrong answers, and times each huge input once after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench_meta import meta  # scripts/ is on sys.path when a script runs
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rlpractice.grading.registry import get_verifier  # noqa: E402
from rlpractice.textbook.countdown_textbook import build_textbook  # noqa: E402

HUGE = {  # name -> answer text; each must come back as reward 0 with a reason
    "no answer mark, 10^6 brackets": "(" * 10**6,
    "no answer mark, 2x10^6 characters of products": "9*" * 10**6 + "9",
    "answer of 10^6 digits": "Answer: " + "9" * 10**6,
    "answer of 10^6 brackets": "Answer: " + "(" * 10**6,
    "answer of 99 characters of products": "Answer: " + "9*" * 49 + "9",
    "answer of 99 nested brackets": "Answer: " + "(" * 99,
}


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/bench/countdown.json")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tb = OmegaConf.load(ROOT / "conf" / "textbook" / "countdown.yaml")
    sizes = {k: tb[k] for k in ("exposition_paragraphs", "worked", "practice", "heldout")}
    build = lambda: build_textbook(0, *sizes.values(), levels=tuple(tb.levels), answer_only_fraction=tb.answer_only)  # noqa: E731
    book = build()
    book_s = best_of(args.repeats, build)

    countdown = get_verifier("countdown").fn
    worked = [(p.solution, p.answer, p.columns) for p in book.worked]
    wrong = [("Answer: " + "+".join(map(str, p.columns["numbers"])), p.answer, p.columns) for p in book.worked]
    cases = worked + wrong
    grade_s = best_of(args.repeats, lambda: [countdown(c, a, **cols) for c, a, cols in cases])
    columns = {"numbers": [3, 5, 7], "target": 22}
    huge = {}
    for name, text in HUGE.items():
        countdown(text, "22", **columns)
        start = time.perf_counter()
        grade = countdown(text, "22", **columns)
        huge[name] = {"chars": len(text), "seconds": round(time.perf_counter() - start, 5), "reason": grade.reason}

    report = {**meta(), "textbook_sizes": sizes, "textbook_seconds": round(book_s, 3),
              "gradings_per_s": round(len(cases) / grade_s), "graded": len(cases), "huge_inputs": huge,
              "huge_input_worst_seconds": max(h["seconds"] for h in huge.values()),
              "huge_over_ordinary": round(max(h["seconds"] for h in huge.values()) / (grade_s / len(cases)), 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"textbook {sizes}: {book_s:.2f} s; grading {report['gradings_per_s']:,}/s; worst huge input "
          f"{report['huge_input_worst_seconds'] * 1000:.1f} ms ({report['huge_over_ordinary']}x an ordinary answer); "
          f"written to {out}")


if __name__ == "__main__":
    main()
