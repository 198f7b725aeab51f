"""A whole experiment as a user runs it: `python -m rlpractice +experiment=<name>`, its held-out pass@1 after SFT
and after RL (and, with tools, the same model's pass@1 with them switched off) and its wall time.

    .venv/bin/python scripts/bench_experiment.py [--experiment math_tools] [--run-dir DIR] [--out FILE]
        [overrides ...]

A finished run already in --run-dir (one with a summary.json) is read instead of run again, so the figures of a
run made from a fresh clone can be recorded as they are. Writes runs/bench/experiment_<name>.json unless --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench_meta import meta  # scripts/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", default="math_tools")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    run_dir = Path(args.run_dir or ROOT / "runs" / "bench" / f"experiment_{args.experiment}")
    if not (run_dir / "summary.json").exists():
        cmd = [sys.executable, "-m", "rlpractice", f"+experiment={args.experiment}", *args.overrides,
               f"hydra.run.dir={run_dir}"]
        start = time.time()
        subprocess.run(cmd, cwd=ROOT, check=True)
        print(f"[bench_experiment] {args.experiment} done in {time.time() - start:.0f}s", flush=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    keys = ("sft_pass_at_1", "rl_pass_at_1", "sft_pass_at_1_no_tools", "rl_pass_at_1_no_tools", "rl_steps",
            "wall_seconds", "sft_tools/calls_per_completion", "rl_tools/calls_per_completion",
            "rl_tools/correct_with_tool",
            *(f"{stage}_{k}" for stage in ("sft", "rl") for k in ("first_attempt_pass@1", "success_within_2_attempts",
                                                                  "independent_pass@2", "env/recovery_rate")))
    result = {**meta(), "experiment": args.experiment, "overrides": args.overrides,
              **{k: summary[k] for k in keys if k in summary}}
    out = Path(args.out or ROOT / "runs" / "bench" / f"experiment_{args.experiment}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
