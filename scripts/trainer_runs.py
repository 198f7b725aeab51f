"""What the benchmark scripts share: running the trainer as a user would, once per run directory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_trainer(run_dir: Path, overrides: list[str], tag: str) -> Path:
    """`python -m rlpractice +experiment=math <overrides>` into `run_dir`, unless a finished run (one with a
    summary.json) is already there: a benchmark can be re-run after an interruption without redoing runs."""
    if not (run_dir / "summary.json").exists():
        args = [sys.executable, "-m", "rlpractice", "+experiment=math", *overrides, f"hydra.run.dir={run_dir}"]
        print(f"[{tag}] {run_dir.name}: {' '.join(args[3:])}", flush=True)
        start = time.time()
        subprocess.run(args, cwd=ROOT, check=True)
        print(f"[{tag}] {run_dir.name} done in {time.time() - start:.0f}s", flush=True)
    return run_dir
