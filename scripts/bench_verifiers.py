"""Accuracy and speed of rlpractice's math verifier vs Math-Verify on tests/verifier_corpus.jsonl.

    python scripts/bench_verifiers.py [--out runs/bench/verifiers.json] [--timeout 5]

Both graders run the same cases in the same order, each in one worker process of its own (single process,
no parallelism). The parent enforces a hard per-case timeout from outside: a case still running then is
killed with its worker, counted wrong (as a timeout) and charged the full timeout; a fresh worker takes
over. Math-Verify needs this: its signal-based timeout cannot stop its parser on power towers.

rlpractice is measured the way the trainer uses it: `fast` (plain numbers) first, then the full function.
Math-Verify is called as its README shows: verify(parse("$gold$"), parse(completion)); and a second time
on the answer our extraction finds ("math_verify_on_extracted"), to separate extraction from equivalence.
Speed is reported on the ordinary cases (no timeouts there) and on all cases, timeouts charged.
Math-Verify is a benchmark-only dependency (`pip install -e .[dev]`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench_meta import meta  # scripts/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "verifier_corpus.jsonl"


def _serve(conn, engine: str) -> None:
    """Worker: grade (completion, gold) pairs, reply (reward, reason, seconds spent grading)."""
    sys.path.insert(0, str(ROOT))
    if engine == "rlpractice":
        from rlpractice.grading.registry import get_verifier

        math = get_verifier("math")

        def grade(completion: str, gold: str) -> tuple[float, str]:
            g = math.fast(completion, gold) or math.fn(completion, gold)
            return g.reward, g.reason
    else:
        import logging

        from math_verify import parse, verify

        logging.disable(logging.WARNING)  # it logs each timeout with the whole (up to 10^6-character) input

        from rlpractice.grading.extract import extract_answer

        def grade(completion: str, gold: str) -> tuple[float, str]:
            if engine == "math_verify_on_extracted":  # our extraction, their equivalence
                completion = extract_answer(completion)
                if completion is None:
                    return 0.0, "no final answer found"
                completion = f"${completion}$"
            ok = verify(parse(f"${gold}$"), parse(completion))
            return float(ok), "verified" if ok else "not verified"

    conn.send("ready")
    while (task := conn.recv()) is not None:
        start = time.perf_counter()
        try:
            reward, reason = grade(*task)
        except Exception as exc:  # noqa: BLE001 - a grader's exception is a wrong answer, not a crash of the bench
            reward, reason = 0.0, f"error: {type(exc).__name__}"
        conn.send((reward, reason[:200], time.perf_counter() - start))


class Worker:
    def __init__(self, engine: str):
        self.engine = engine
        self.ctx = mp.get_context("spawn")
        self._start()

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_serve, args=(child, self.engine), daemon=True)
        self.proc.start()
        child.close()
        assert self.conn.recv() == "ready"

    def grade(self, completion: str, gold: str, timeout_s: float) -> tuple[float, str, float, bool]:
        """(reward, reason, seconds, timed_out)"""
        self.conn.send((completion, gold))
        if self.conn.poll(timeout_s):
            return (*self.conn.recv(), False)
        self.proc.kill()
        self.proc.join()
        self._start()
        return 0.0, "timeout", timeout_s, True

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(timeout=5)


def run(engine: str, rows: list[dict], timeout_s: float) -> dict:
    worker = Worker(engine)
    for r in rows[:20]:  # warm-up: lazy imports and first-call costs are not grading speed
        worker.grade(r["prediction"], r["gold"], timeout_s)
    results = []
    for r in rows:
        reward, reason, seconds, timed_out = worker.grade(r["prediction"], r["gold"], timeout_s)
        results.append({"right": (reward == 1.0) == r["expected"], "seconds": seconds, "timeout": timed_out,
                        "reason": reason})
    worker.close()
    return summarise(rows, results)


def summarise(rows: list[dict], results: list[dict]) -> dict:
    def stats(idx: list[int]) -> dict:
        seconds = sum(results[i]["seconds"] for i in idx)
        return {"cases": len(idx), "accuracy": round(sum(results[i]["right"] for i in idx) / len(idx), 4),
                "seconds": round(seconds, 3), "gradings_per_s": round(len(idx) / seconds, 1),
                "timeouts": sum(results[i]["timeout"] for i in idx)}

    by_cat = defaultdict(list)
    for i, r in enumerate(rows):
        by_cat[r["category"]].append(i)
    ordinary = [i for i, r in enumerate(rows) if r["category"] != "adversarial"]
    wrong = [{"category": rows[i]["category"], "gold": rows[i]["gold"][:80], "prediction": rows[i]["prediction"][-80:],
              "expected": rows[i]["expected"], "reason": results[i]["reason"]}
             for i in range(len(rows)) if not results[i]["right"]]
    return {"all": stats(list(range(len(rows)))), "ordinary": stats(ordinary),
            "per_category": {c: stats(idx)["accuracy"] for c, idx in sorted(by_cat.items())}, "wrong": wrong}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("BENCH_VERIFIERS_OUT", "runs/bench/verifiers.json"))
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--timeout", type=float, default=5.0, help="hard per-case limit in seconds")
    args = ap.parse_args()
    rows = [json.loads(line) for line in Path(args.corpus).read_text().splitlines()]
    report = {**meta(), "corpus": args.corpus, "cases": len(rows), "timeout_s": args.timeout}
    for engine in ("rlpractice", "math_verify", "math_verify_on_extracted"):
        start = time.monotonic()
        report[engine] = run(engine, rows, args.timeout)
        print(f"{engine}: {json.dumps(report[engine]['ordinary'])} all: {json.dumps(report[engine]['all'])} "
              f"({time.monotonic() - start:.0f}s wall)", flush=True)
    ours, theirs = report["rlpractice"], report["math_verify"]
    report["throughput_ratio"] = round(ours["ordinary"]["gradings_per_s"] / theirs["ordinary"]["gradings_per_s"], 2)
    report["throughput_ratio_all_cases"] = round(ours["all"]["gradings_per_s"] / theirs["all"]["gradings_per_s"], 2)
    extracted = report["math_verify_on_extracted"]["ordinary"]["gradings_per_s"]
    report["throughput_ratio_vs_on_extracted"] = round(ours["ordinary"]["gradings_per_s"] / extracted, 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(f"throughput ratio (ordinary cases): {report['throughput_ratio']}x; "
          f"accuracy {ours['all']['accuracy']} vs {theirs['all']['accuracy']}; written to {out}")


if __name__ == "__main__":
    main()
