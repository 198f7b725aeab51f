"""Held-out pass@1 after SFT and after each RL algorithm, from one shared SFT checkpoint.

    .venv/bin/python scripts/compare_algorithms.py [hydra overrides ...]

First runs the default math experiment with `rl.steps=0` (pretrain + SFT + evaluation), then, from that
SFT checkpoint, one RL run per algorithm (GRPO, Dr. GRPO, DAPO, RFT) with the same seed, the same samples
per step and the same wall-clock budget for RL (`rl.time_budget_s`, default 300 s; each run stops after
the step that crosses it). Writes runs/compare/compare.json and prints a Markdown table. Extra arguments
are Hydra overrides applied to every run (e.g. rl.time_budget_s=600). Run it on an otherwise idle
machine: the budget is wall-clock.
"""

from __future__ import annotations

import json
import sys

from bench_meta import meta  # scripts/ is on sys.path when a script runs
from trainer_runs import ROOT, run_trainer

OUT = ROOT / "runs" / "compare"
ALGOS = ["grpo", "dr_grpo", "dapo", "rft"]
BUDGET = ["rl.steps=10000", "rl.time_budget_s=300"]  # the wall budget decides; later overrides win


def run(name: str, overrides: list[str]) -> dict:
    return json.loads((run_trainer(OUT / name, overrides, "compare") / "summary.json").read_text())


def main(extra: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sft = run("sft", ["rl.steps=0", *extra])
    sft_ckpt = OUT / "sft" / "checkpoints" / "sft"
    rows = {"sft": {"pass@1": sft["sft_pass_at_1"], "maj@8": sft.get("sft_maj@8"), "rl_steps": 0,
                    "wall_seconds": sft["wall_seconds"]}}
    for algo in ALGOS:
        s = run(algo, [f"model.path={sft_ckpt}", "sft.steps=0", f"algo={algo}", *BUDGET, *extra])
        rows[algo] = {"pass@1": s["rl_pass_at_1"], "maj@8": s.get("rl_maj@8"), "rl_steps": s["rl_steps"],
                      "wall_seconds": s["wall_seconds"], "sft_pass@1_same_engine": s["sft_pass_at_1"]}
    result = {**meta(), "overrides": extra, "heldout_problems": sft["heldout_problems"],
              "samples_per_problem": sft["eval_samples_per_problem"], "results": rows}
    (OUT / "compare.json").write_text(json.dumps(result, indent=2))
    print("\n| after | held-out pass@1 | maj@8 | RL steps | wall (s) |\n|---|---|---|---|---|")
    for name, r in rows.items():
        maj = f"{r['maj@8']:.3f}" if r["maj@8"] is not None else "-"
        print(f"| {name} | {r['pass@1']:.3f} | {maj} | {r['rl_steps']} | {r['wall_seconds']:.0f} |")
    print(f"\nwritten: {OUT / 'compare.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
