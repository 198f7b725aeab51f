"""rlpractice against TRL's GRPOTrainer on the same work: samples/second and wall time to a pass@1 target.

    .venv/bin/pip install -e '.[cpu,dev,bench]'        # bench = trl (only this script needs it)
    .venv/bin/python scripts/bench_vs_trl.py [--sft CHECKPOINT] [--seeds 3] [--budget 300] [--target 0.40]

Both trainers start from the same SFT checkpoint (given, or made first with the default experiment, rl.steps=0 and
seed 0) and train for the same wall budget on the same practice problems, once per seed 0 .. N-1 (--seeds, default
3): each seed runs both trainers with that seed. How the settings match:

  setting                     rlpractice                        TRL GRPOConfig
  problems per step           rl.prompts_per_step=P             generation batch = P*G completions, one
  group size                  rl.samples_per_prompt=G           optimizer step per generation batch
                                                                (num_generations=G, steps_per_generation =
                                                                gradient_accumulation_steps)
  completion length           sampler.max_new_tokens=64         max_completion_length=64
  sampling                    temperature 1, top_p 1            temperature=1, top_p=1, top_k=0
  learning rate / optimizer   algo.lr=1e-4, AdamW(0.9, 0.99),   learning_rate=1e-4, constant schedule,
                              wd 0, grad clip 1                 adam_beta2=0.99, weight_decay=0, max_grad_norm=1
  loss                        GRPO: group mean/std advantages,  loss_type=grpo, scale_rewards=group,
                              clip 0.2, mean over tokens then   epsilon=0.2, beta=0 (no KL, no reference
                              over sequences, no KL             model), num_iterations=1
  reward                      rlpractice's math verifier        the same verifier, through the same pool
  generation                  vLLM in Ray actors                HF transformers generate (TRL's default;
                                                                TRL's vLLM modes need CUDA)

Held-out pass@1 is measured the same way for both, with rlpractice's evaluation (same held-out problems,
8 samples each, temperature 1): rlpractice evaluates during its run, TRL's checkpoints are saved every
--eval-every steps and evaluated afterwards. Evaluation and checkpoint-saving time is not counted as
training time for TRL; for rlpractice, evaluation is excluded and its per-step checkpoint (the default)
is counted. The time to the target is where the straight line from the evaluation before the first one at or above
it to that one crosses it (also recorded: the training seconds of that first evaluation at or above it).

Over the seeds it reports, per trainer, the mean and 95% Student-t interval (scripts/stats.py) of samples/s, of the
seconds to the target and of held-out pass@1 after the budget, and the per-seed ratios rlpractice / TRL of
samples/s and of the time to the target with their mean and interval. A seed that does not reach the target within
its budget has no time to it (null; the doc shows "> S s", S the training seconds at its last evaluation): the
time to the target is averaged over the seeds that reached it, with their count beside it, and the time ratio over
the seeds where both trainers reached it (also counted). Where only one did, the seed's ratio is bounded instead
and left out of the mean: time_to_target_ratio_at_most when only rlpractice reached it (TRL would have needed more
than S), _at_least when only TRL did. Fewer than two such seeds give no interval; none, no mean. Read a mean over
the seeds that reached the target with their count: it leaves out the slowest seeds of a trainer that sometimes
misses.

Runs go to runs/bench/vs_trl/ (sft/, and seed<s>/rlpractice/ and seed<s>/trl/ per seed); a finished run is reused
when the script runs again, so an interrupted benchmark resumes. Writes runs/bench/vs_trl.json and prints the
table docs/benchmarks.md shows. N seeds take N times as long as one (per seed: both trainers' budgets, their start-up
and the evaluations); run it on an otherwise idle machine, the budget is wall-clock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_meta import meta  # scripts/ is on sys.path when a script runs
from benchmarks_doc import markdown, vs_trl, vs_trl_extra
from stats import mean_ci, summary
from trainer_runs import ROOT, run_trainer

OUT = ROOT / "runs" / "bench" / "vs_trl"
TRAINERS = ("rlpractice", "trl")


def compose_cfg(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from rlpractice import config_schema  # noqa: F401 - registers the schema conf/ names

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["+experiment=math", *overrides])


def rlpractice_curve(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(per-step rows with cumulative training seconds, evaluation excluded; eval points)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps, total = [], 0.0
    for r in (r for r in rows if r["stage"] == "rl"):
        total += r["time/step"]
        steps.append({"step": r["step"], "seconds": r["time/step"], "train_seconds": total})
    return steps, [{"step": r["step"], "pass@1": r["pass@1"]} for r in rows if r["stage"] == "eval"]


def trl_worker(sft: str, budget: float, prompts: int, group: int, micro: int, eval_every: int, seed: int,
               out: Path) -> None:
    """Train with TRL's GRPOTrainer for `budget` seconds; checkpoints and per-step times go to `out`."""
    import shutil

    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    from rlpractice import model as policy
    from rlpractice.grading.pool import GradingPool
    from rlpractice.textbook.sources import load_book

    hf_logging.disable_progress_bar()  # no "Writing model shards" bar per checkpoint
    cfg = compose_cfg([f"seed={seed}"])
    book = load_book(cfg)
    data = Dataset.from_list([{"prompt": p.prompt, "answer": p.answer} for p in book.practice])
    pool = GradingPool.from_config(cfg.verifier)

    def math_reward(prompts, completions, answer, **_) -> list[float]:
        return [g.reward for g in pool.grade(completions, answer)]

    model, tokenizer = policy.load(sft)  # untied embeddings, pad token: the same model rlpractice trains
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("step_*"):  # an interrupted run's checkpoints: this run starts again from step 0
        shutil.rmtree(stale)
    (out / "evals.json").unlink(missing_ok=True)
    accumulation = prompts * group // micro
    args = GRPOConfig(
        output_dir=str(out / "trainer"), use_cpu=True, bf16=False, report_to="none", save_strategy="no", seed=seed,
        max_steps=100_000, logging_steps=5, disable_tqdm=True,
        num_generations=group, per_device_train_batch_size=micro, gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation, max_completion_length=cfg.sampler.max_new_tokens,
        temperature=cfg.sampler.temperature, top_p=cfg.sampler.top_p, top_k=0,
        learning_rate=cfg.algo.lr, lr_scheduler_type="constant", warmup_steps=0, adam_beta1=0.9, adam_beta2=0.99,
        weight_decay=cfg.algo.weight_decay, max_grad_norm=cfg.algo.grad_clip,
        loss_type="grpo", scale_rewards="group", epsilon=cfg.algo.epsilon_low, beta=0.0, num_iterations=1,
    )

    class Clock(TrainerCallback):
        """Training seconds per optimizer step; saves a checkpoint every `eval_every` steps (not timed)."""

        def __init__(self):
            self.rows, self.train_seconds, self.t0 = [], 0.0, None

        def on_step_begin(self, args, state, control, **kw):
            if self.t0 is None:
                self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            seconds = time.perf_counter() - self.t0
            self.train_seconds += seconds
            self.rows.append({"step": state.global_step, "seconds": seconds, "train_seconds": self.train_seconds})
            if state.global_step % eval_every == 0 or self.train_seconds >= budget:
                policy.save(model, tokenizer, out / f"step_{state.global_step}")
            if self.train_seconds >= budget:
                control.should_training_stop = True
            self.t0 = time.perf_counter()

    clock = Clock()
    trainer = GRPOTrainer(model=model, reward_funcs=math_reward, args=args, train_dataset=data,
                          processing_class=tokenizer, callbacks=[clock])
    try:
        trainer.train()
    finally:
        pool.close()
    (out / "steps.json").write_text(json.dumps(clock.rows, indent=2))


def trl_curve(sft: str, seed: int, out: Path) -> tuple[list[dict], list[dict]]:
    """TRL's per-step rows and its checkpoints' held-out pass@1, evaluated with rlpractice's evaluation (once: kept
    in evals.json)."""
    steps = json.loads((out / "steps.json").read_text())
    done = out / "evals.json"
    if done.exists():
        return steps, json.loads(done.read_text())
    from rlpractice.evaluation import evaluate
    from rlpractice.grading.pool import GradingPool
    from rlpractice.rollout.samplers import Samplers
    from rlpractice.textbook.sources import load_book

    cfg = compose_cfg([f"seed={seed}"])
    heldout = list(load_book(cfg).heldout)
    points = [(0, sft)] + sorted((int(d.name[5:]), str(d)) for d in out.glob("step_*"))
    ev = cfg.eval
    pool = GradingPool.from_config(cfg.verifier)
    samplers = Samplers(sft, cfg.sampler, cfg.cluster, seed)
    evals = []
    try:
        for step, path in points:
            samplers.sync_weights(path)
            result = evaluate(samplers, pool, heldout, ev.samples_per_problem, [1])
            evals.append({"step": step, "pass@1": result["pass@1"]})
            print(f"[bench_vs_trl] TRL seed {seed} step {step}: held-out pass@1 {result['pass@1']:.3f}", flush=True)
    finally:
        samplers.shutdown()
        pool.close()
    done.write_text(json.dumps(evals, indent=2))
    return steps, evals


def time_to(evals: list[dict], target: float) -> float | None:
    """Training seconds at the first evaluation that reaches `target`."""
    return next((e["train_seconds"] for e in evals if e["pass@1"] >= target), None)


def time_to_interpolated(evals: list[dict], target: float) -> float | None:
    """Where the straight line between the first evaluation at or above `target` and the one before it crosses
    it (that evaluation's own seconds when it is the first): less sensitive than `time_to` to where the evaluation
    points happen to fall. None when no evaluation reaches `target`."""
    i = next((i for i, e in enumerate(evals) if e["pass@1"] >= target), None)
    if i is None:
        return None
    after = evals[i]
    if i == 0:
        return after["train_seconds"]
    before = evals[i - 1]
    share = (target - before["pass@1"]) / (after["pass@1"] - before["pass@1"])
    return before["train_seconds"] + share * (after["train_seconds"] - before["train_seconds"])


def summarise(steps: list[dict], evals: list[dict], completions_per_step: int, target: float) -> dict:
    """Step-time figures, and each eval point placed at the training seconds its step had reached. A run that
    misses the target needs more than "evaluated_seconds", those of its last evaluation."""
    at = {s["step"]: s["train_seconds"] for s in steps} | {0: 0.0}
    evals = [e | {"train_seconds": at[e["step"]]} for e in evals]
    timed = steps[1:] or steps  # the first step also warms up (engine caches, allocator)
    step_s = statistics.median(s["seconds"] for s in timed)
    return {"steps": len(steps), "median_step_s": step_s, "samples_per_s": completions_per_step / step_s,
            "train_seconds": steps[-1]["train_seconds"], "evaluated_seconds": evals[-1]["train_seconds"],
            "final_pass@1": evals[-1]["pass@1"],
            "best_pass@1": max(e["pass@1"] for e in evals), "seconds_to_target": time_to(evals, target),
            "seconds_to_target_interpolated": time_to_interpolated(evals, target), "evals": evals}


def partial_summary(values: list[float | None]) -> dict:
    """stats.summary of the values that are there (None: a seed without one, e.g. it missed the target), with their
    count "n"; "values" keeps every seed's, None included, in seed order. No mean when none is there."""
    there = [v for v in values if v is not None]
    mean, half = mean_ci(there) if there else (None, None)
    return {"mean": mean, "half_width": half, "values": list(values), "n": len(there)}


def time_ratio(ours: dict, trl: dict, key: str = "seconds_to_target_interpolated") -> dict:
    """One seed's time-to-target ratio rlpractice / TRL from two `summarise` results: "ratio" when both reached the
    target (and TRL's time is not 0, the SFT checkpoint itself); when only one did, a bound from the other's
    training seconds at its last evaluation (it would have needed more): "at_most" when only rlpractice reached it,
    "at_least" when only TRL did. All None when neither reached it."""
    t_ours, t_trl = ours[key], trl[key]
    r = {"ratio": None, "at_most": None, "at_least": None}
    if t_ours is not None and t_trl is not None:
        r["ratio"] = t_ours / t_trl if t_trl > 0 else None
    elif t_ours is not None:
        r["at_most"] = t_ours / trl["evaluated_seconds"]
    elif t_trl is not None and t_trl > 0:
        r["at_least"] = ours["evaluated_seconds"] / t_trl
    return r


def seed_result(seed: int, ours: dict, trl: dict) -> dict:
    """Both trainers' `summarise` results for one seed and their ratios rlpractice / TRL."""
    interpolated = time_ratio(ours, trl)
    return {"seed": seed, "rlpractice": ours, "trl": trl,
            "samples_per_s_ratio": ours["samples_per_s"] / trl["samples_per_s"],
            "time_to_target_ratio": time_ratio(ours, trl, "seconds_to_target")["ratio"],  # at the eval points
            "time_to_target_ratio_interpolated": interpolated["ratio"],
            "time_to_target_ratio_at_most": interpolated["at_most"],
            "time_to_target_ratio_at_least": interpolated["at_least"]}


def aggregate(runs: list[dict]) -> dict:
    """Per-seed results (seed_result, in seed order) -> per trainer the mean and 95% interval of samples/s, median
    step, held-out pass@1 after the budget and seconds to the target (over the seeds that reached it: "n"), and of
    the per-seed ratios (the time ratio over the seeds where both reached it)."""
    def trainer(name: str) -> dict:
        xs = [r[name] for r in runs]
        return {"samples_per_s": summary([x["samples_per_s"] for x in xs]),
                "median_step_s": summary([x["median_step_s"] for x in xs]),
                "final_pass@1": summary([x["final_pass@1"] for x in xs]),
                "seconds_to_target_interpolated": partial_summary([x["seconds_to_target_interpolated"] for x in xs]),
                "seconds_to_target": partial_summary([x["seconds_to_target"] for x in xs]),
                "steps": [x["steps"] for x in xs], "train_seconds": [x["train_seconds"] for x in xs]}

    return {**{name: trainer(name) for name in TRAINERS},
            "samples_per_s_ratio": summary([r["samples_per_s_ratio"] for r in runs]),
            "time_to_target_ratio_interpolated": partial_summary([r["time_to_target_ratio_interpolated"]
                                                                  for r in runs]),
            "time_to_target_ratio": partial_summary([r["time_to_target_ratio"] for r in runs])}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sft", help="an SFT checkpoint directory (default: train one first, seed 0)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per trainer, seeds 0 .. N-1 (default 3)")
    parser.add_argument("--budget", type=float, default=300.0, help="training wall seconds per trainer and seed")
    parser.add_argument("--target", type=float, default=0.40, help="held-out pass@1 to reach")
    parser.add_argument("--prompts", type=int, default=32, help="problems per step")
    parser.add_argument("--group", type=int, default=32, help="samples per problem")
    parser.add_argument("--micro", type=int, default=64, help="TRL's per-device micro-batch (completions)")
    parser.add_argument("--eval-every", type=int, default=5, help="steps between held-out evaluations")
    parser.add_argument("--trl-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)  # the worker's
    parser.add_argument("--trl-dir", type=Path, help=argparse.SUPPRESS)  # the worker's
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.budget <= 0:
        parser.error("--seeds must be >= 1 and --budget > 0")
    return args


def run_seed(args: argparse.Namespace, sft: Path, seed: int) -> dict:
    """Both trainers from `sft` with `seed` (each reused when finished before), summarised with their ratios."""
    out = OUT / f"seed{seed}"
    run_dir = run_trainer(out / "rlpractice", [
        f"model.path={sft}", "sft.steps=0", "rl.steps=100000", f"rl.time_budget_s={args.budget}",
        f"rl.eval_every={args.eval_every}", f"rl.prompts_per_step={args.prompts}",
        f"rl.samples_per_prompt={args.group}", f"seed={seed}"], "bench_vs_trl")
    if not (out / "trl" / "steps.json").exists():
        worker = [sys.executable, __file__, "--trl-worker", f"--sft={sft}", f"--budget={args.budget}",
                  f"--prompts={args.prompts}", f"--group={args.group}", f"--micro={args.micro}",
                  f"--eval-every={args.eval_every}", f"--seed={seed}", f"--trl-dir={out / 'trl'}"]
        print(f"[bench_vs_trl] TRL GRPOTrainer, seed {seed} ...", flush=True)
        subprocess.run(worker, cwd=ROOT, check=True)
    per_step = args.prompts * args.group
    return seed_result(seed, summarise(*rlpractice_curve(run_dir), per_step, args.target),
                       summarise(*trl_curve(str(sft), seed, out / "trl"), per_step, args.target))


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.trl_worker:
        return trl_worker(args.sft, args.budget, args.prompts, args.group, args.micro, args.eval_every, args.seed,
                          args.trl_dir)
    OUT.mkdir(parents=True, exist_ok=True)
    sft = (Path(args.sft).resolve() if args.sft else
           run_trainer(OUT / "sft", ["rl.steps=0", "seed=0"], "bench_vs_trl") / "checkpoints" / "sft")
    seeds = list(range(args.seeds))
    runs = [run_seed(args, sft, s) for s in seeds]
    result = {
        **meta(),
        "setup": {"sft_checkpoint": str(sft), "budget_s": args.budget, "target_pass@1": args.target,
                  "prompts_per_step": args.prompts, "samples_per_prompt": args.group,
                  "trl_micro_batch": args.micro, "eval_every": args.eval_every},
        "seeds": seeds, **aggregate(runs), "runs": runs,
    }
    (OUT.parent / "vs_trl.json").write_text(json.dumps(result, indent=2))
    print("\n" + "\n".join([*markdown(vs_trl(result)), "", *vs_trl_extra(result)]))
    print(f"\nwritten: {OUT.parent / 'vs_trl.json'}")


if __name__ == "__main__":  # vLLM starts worker processes with spawn
    main()
