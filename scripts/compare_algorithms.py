"""Held-out pass@1, pass@8 and maj@8 after RL for each RL configuration, over several seeds, from one SFT checkpoint.

    .venv/bin/python scripts/compare_algorithms.py [--seeds 3] [--algos grpo,passk] [--budget 300 | --steps N]
                                                   [--out runs/compare] [overrides ...]

First runs the default math experiment with `rl.steps=0` and seed 0 (pretrain + SFT + evaluation); then, from that
SFT checkpoint, one RL run per configuration (a conf/algo/ file: grpo, dr_grpo, dapo, gspo, rloo, rft, passk) and
seed 0 .. N-1, each with the same samples per step and the same RL wall-clock budget (`rl.time_budget_s`; each run
stops after the step that crosses it), or with --steps the same number of RL steps. A configuration may carry its
own overrides after `@`: `--algos grpo,grpo@algo.sampler_is=false` compares the default with the importance
correction against the same without it. For each configuration it reports the mean over seeds and its 95% Student-t
interval (scripts/stats.py) of held-out pass@1, pass@8 and maj@8 after RL, and of their change from SFT: each run
evaluates the SFT checkpoint at step 0 with its own seed, so the change is a per-seed paired difference.

Writes runs/compare/compare.json (means, half-widths and the per-seed figures), runs/compare/compare.png (held-out
pass@1 and pass@8 over the RL steps, one line per seed) and prints the table docs/benchmarks.md shows. Extra
arguments are Hydra overrides applied to every run (after the script's own, so they win; `seed` is the script's).
A finished run (one with a summary.json) is reused when the script runs again. Run it on an otherwise idle
machine: the budget is wall-clock. 2 configurations x 3 seeds x 300 s take about an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_meta import meta  # scripts/ is on sys.path when a script runs
from benchmarks_doc import compare, markdown
from stats import summary
from trainer_runs import ROOT, run_trainer

OUT = ROOT / "runs" / "compare"
METRICS = ["pass@1", "pass@8", "maj@8"]  # those the default evaluation reports (8 samples per problem, k 1 and 8)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="RL runs per configuration, seeds 0 .. N-1 (default 3)")
    p.add_argument("--algos", default="grpo,passk",
                   help="comma-separated conf/algo/ choices (default grpo,passk; e.g. grpo,dr_grpo,dapo,rft,passk)")
    p.add_argument("--budget", type=float, default=300.0, help="RL wall-clock seconds per run (default 300)")
    p.add_argument("--steps", type=int, default=0, help="> 0: this many RL steps per run instead of a wall budget")
    p.add_argument("--out", type=Path, default=OUT, help="where the runs and compare.json go (default runs/compare)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. rl.prompts_per_step=16")
    args = p.parse_args(argv)
    args.algos = [a for a in args.algos.split(",") if a]
    unknown = [a for a in args.algos if not (ROOT / "conf" / "algo" / f"{a.split('@')[0]}.yaml").exists()]
    if unknown or not args.algos:
        p.error(f"--algos: no conf/algo/ file for {', '.join(unknown) or 'an empty list'}")
    if args.seeds < 1 or args.budget <= 0:
        p.error("--seeds must be >= 1 and --budget > 0")
    return args


def summarise(runs: list[dict], metrics: list[str]) -> dict:
    """One configuration's summary.json files (in seed order) -> mean and 95% interval of each metric after RL and
    of its change from the same run's SFT evaluation, with the per-seed values."""
    return {"after_rl": {m: summary([r[f"rl_{m}"] for r in runs]) for m in metrics},
            "change_from_sft": {m: summary([r[f"rl_{m}"] - r[f"sft_{m}"] for r in runs]) for m in metrics},
            "rl_steps": [r["rl_steps"] for r in runs],
            "wall_seconds": [round(r["wall_seconds"]) for r in runs]}


def eval_curve(metrics_path: Path, metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one held-out metric in a run's metrics.jsonl (stage eval; step 0 is the SFT checkpoint)."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    ev = [r for r in rows if r["stage"] == "eval" and metric in r]
    return [r["step"] for r in ev], [r[metric] for r in ev]


def plot(run_dirs: dict[str, list[Path]], out_png: Path, metrics: tuple[str, ...] = ("pass@1", "pass@8"),
         results: dict | None = None) -> None:
    """One panel per metric; one colour per configuration, one line per seed (the spread is the seeds' noise). With
    `results` (summarise's, per configuration) a last panel shows the trade-off: each configuration's change in
    pass@1 against its change in pass@8, with their 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(metrics) + bool(results)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2), squeeze=False)
    if results:
        ax = axes[0][-1]
        for i, (algo, r) in enumerate(results.items()):
            x, y = r["change_from_sft"]["pass@1"], r["change_from_sft"]["pass@8"]
            ax.errorbar(x["mean"], y["mean"], xerr=x["half_width"], yerr=y["half_width"], fmt="o", color=f"C{i}",
                        capsize=3, label=algo)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("change in held-out pass@1 (RL - SFT)")
        ax.set_ylabel("change in held-out pass@8")
        ax.grid(alpha=0.3)
        ax.legend()
    for ax, metric in zip(axes[0], metrics, strict=False):
        for i, (algo, dirs) in enumerate(run_dirs.items()):
            for j, run_dir in enumerate(dirs):
                steps, values = eval_curve(run_dir / "metrics.jsonl", metric)
                ax.plot(steps, values, color=f"C{i}", alpha=0.7, marker=".", label=algo if j == 0 else None)
        ax.set_xlabel("RL step (0 = the SFT checkpoint)")
        ax.set_ylabel(f"held-out {metric}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    sft = json.loads((run_trainer(out / "sft", ["rl.steps=0", *args.overrides, "seed=0"], "compare")
                      / "summary.json").read_text())
    sft_ckpt = out / "sft" / "checkpoints" / "sft"
    length = [f"rl.steps={args.steps}"] if args.steps else ["rl.steps=10000", f"rl.time_budget_s={args.budget}"]
    metrics = [m for m in METRICS if f"sft_{m}" in sft]  # an eval override may drop pass@8 or rename maj@8
    seeds = list(range(args.seeds))
    results, run_dirs = {}, {}
    for algo in args.algos:
        choice, *own = algo.split("@")
        run_dirs[algo] = [out / f"{''.join(c if c.isalnum() else '_' for c in algo)}_seed{s}" for s in seeds]
        overrides = [f"model.path={sft_ckpt}", "sft.steps=0", f"algo={choice}", *length, *own, *args.overrides]
        runs = [json.loads((run_trainer(d, [*overrides, f"seed={s}"], "compare") / "summary.json").read_text())
                for d, s in zip(run_dirs[algo], seeds, strict=True)]
        results[algo] = summarise(runs, metrics)
    plot(run_dirs, out / "compare.png", results=results if "pass@8" in metrics else None)
    result = {**meta(), "overrides": args.overrides, "seeds": seeds,
              **({"rl_steps": args.steps} if args.steps else {"rl_time_budget_s": args.budget}),
              "heldout_problems": sft["heldout_problems"], "samples_per_problem": sft["eval_samples_per_problem"],
              "sft": {m: sft[f"sft_{m}"] for m in metrics}, "results": results, "plot": "compare.png"}
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    print("\n" + "\n".join(markdown(compare(result))))
    print(f"\nwritten: {out / 'compare.json'}, {out / 'compare.png'}")


if __name__ == "__main__":
    main()
