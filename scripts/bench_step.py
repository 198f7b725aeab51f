"""One RL step's wall time split into sample / grade / learn / sync, synchronous and overlapped.

    .venv/bin/python scripts/bench_step.py [--sft CHECKPOINT] [--budget 240] [--overlap-engines N]
                                           [hydra overrides ...]

From one SFT checkpoint (given, or made first with the default experiment and rl.steps=0), two RL runs with
the same seed, batch and wall budget: rl.max_staleness=0 (sample, then learn) and rl.max_staleness=1
(the next batch is generated while the learner trains). Per run, the medians over its steps of:
  sample, grade    generation and grading of the batch (on the sampling thread when overlapped)
  wait             how long the learner waited for its batch
  learn, sync      the policy update, and writing + reloading the weights in the engines
  step             the whole step, as the trainer saw it (also checkpoint and logging)
and the derived figures: synchronous overhead = step / (sample + grade + learn + sync) - 1 (what the
trainer adds over its raw components); overlapped step / max(sample + grade, learn + sync), with the parts
as measured in the overlapped run and as measured in the synchronous one; speed-up of the overlapped
step over the synchronous one; held-out pass@1 after each run. --overlap-engines N runs the overlapped
run with N engines (sampler.num_samplers; on a CPU the learner then computes on the cores they leave free)
into step/overlap_e<N>. Writes runs/bench/step.json (step_overlap_e<N>.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench_meta import meta  # scripts/ is on sys.path when a script runs
from trainer_runs import ROOT, run_trainer

OUT = ROOT / "runs" / "bench" / "step"


def run(name: str, overrides: list[str]) -> Path:
    return run_trainer(OUT / name, overrides, "bench_step")


def medians(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["stage"] == "rl"][1:]  # the first step also warms the engine up
    med = {k: statistics.median(r[f"time/{k}"] for r in steps) for k in ("sample", "grade", "wait", "learn",
                                                                          "sync", "step")}
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"steps": len(steps) + 1, "median_s": med, "rl_pass_at_1": summary["rl_pass_at_1"],
            "sft_pass_at_1": summary["sft_pass_at_1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sft", help="an SFT checkpoint directory (default: train one first)")
    parser.add_argument("--budget", type=float, default=240.0, help="RL wall seconds per run")
    parser.add_argument("--overlap-engines", type=int, help="sampler.num_samplers of the overlapped run")
    args, extra = parser.parse_known_args()
    OUT.mkdir(parents=True, exist_ok=True)
    sft = Path(args.sft) if args.sft else run("sft", ["rl.steps=0", *extra]) / "checkpoints" / "sft"
    common = [f"model.path={sft}", "sft.steps=0", "rl.steps=10000", f"rl.time_budget_s={args.budget}",
              "rl.eval_every=0", *extra]
    sync = medians(run("sync", [*common, "rl.max_staleness=0"]))
    engines = [] if args.overlap_engines is None else [f"sampler.num_samplers={args.overlap_engines}"]
    name = "overlap" if args.overlap_engines is None else f"overlap_e{args.overlap_engines}"
    overlap = medians(run(name, [*common, "rl.max_staleness=1", *engines]))
    s, o = sync["median_s"], overlap["median_s"]
    result = {
        **meta(),
        "sft_checkpoint": str(sft), "rl_budget_s": args.budget, "overrides": extra, "overlap_overrides": engines,
        "sync": sync, "overlap": overlap,
        "sync_overhead": s["step"] / (s["sample"] + s["grade"] + s["learn"] + s["sync"]) - 1,
        "overlap_step_over_max_component": o["step"] / max(o["sample"] + o["grade"], o["learn"] + o["sync"]),
        "overlap_step_over_max_sync_component": o["step"] / max(s["sample"] + s["grade"], s["learn"] + s["sync"]),
        "overlap_speedup": s["step"] / o["step"],
    }
    (OUT.parent / ("step.json" if name == "overlap" else f"step_{name}.json")).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
