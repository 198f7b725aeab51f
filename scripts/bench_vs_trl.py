"""rlpractice against TRL's GRPOTrainer on the same work: samples/second and wall time to a pass@1 target.

    .venv/bin/pip install -e '.[cpu,dev,bench]'        # bench = trl (only this script needs it)
    .venv/bin/python scripts/bench_vs_trl.py [--sft CHECKPOINT] [--budget 300] [--target 0.40]

Both trainers start from the same SFT checkpoint (given, or made first with the default experiment and
rl.steps=0) and train for the same wall budget on the same practice problems. How the settings match:

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
is counted. Writes runs/bench/vs_trl.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_meta import meta  # scripts/ is on sys.path when a script runs
from trainer_runs import ROOT, run_trainer

OUT = ROOT / "runs" / "bench" / "vs_trl"


def compose_cfg(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from rlpractice import config_schema  # noqa: F401 - registers the schema conf/ names

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["+experiment=math", *overrides])


def run_rlpractice(name: str, overrides: list[str]) -> Path:
    return run_trainer(OUT / name, overrides, "bench_vs_trl")


def rlpractice_curve(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(per-step rows with cumulative training seconds, evaluation excluded; eval points)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps, total = [], 0.0
    for r in (r for r in rows if r["stage"] == "rl"):
        total += r["time/step"]
        steps.append({"step": r["step"], "seconds": r["time/step"], "train_seconds": total})
    return steps, [{"step": r["step"], "pass@1": r["pass@1"]} for r in rows if r["stage"] == "eval"]


def trl_worker(sft: str, budget: float, prompts: int, group: int, micro: int, eval_every: int, seed: int) -> None:
    """Train with TRL's GRPOTrainer for `budget` seconds; checkpoints and per-step times go to OUT/trl/."""
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
    out = OUT / "trl"
    out.mkdir(parents=True, exist_ok=True)
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


def trl_curve(sft: str, seed: int) -> tuple[list[dict], list[dict]]:
    """TRL's per-step rows and its checkpoints' held-out pass@1, evaluated with rlpractice's evaluation."""
    from rlpractice.evaluation import evaluate
    from rlpractice.grading.pool import GradingPool
    from rlpractice.rollout.samplers import Samplers
    from rlpractice.textbook.sources import load_book

    steps = json.loads((OUT / "trl" / "steps.json").read_text())
    done = OUT / "trl" / "evals.json"
    if done.exists():
        return steps, json.loads(done.read_text())
    cfg = compose_cfg([f"seed={seed}"])
    heldout = list(load_book(cfg).heldout)
    points = [(0, sft)] + sorted((int(d.name[5:]), str(d)) for d in (OUT / "trl").glob("step_*"))
    ev = cfg.eval
    pool = GradingPool.from_config(cfg.verifier)
    samplers = Samplers(sft, cfg.sampler, cfg.cluster, seed)
    evals = []
    try:
        for step, path in points:
            samplers.sync_weights(path)
            result = evaluate(samplers, pool, heldout, ev.samples_per_problem, [1])
            evals.append({"step": step, "pass@1": result["pass@1"]})
            print(f"[bench_vs_trl] TRL step {step}: held-out pass@1 {result['pass@1']:.3f}", flush=True)
    finally:
        samplers.shutdown()
        pool.close()
    done.write_text(json.dumps(evals, indent=2))
    return steps, evals


def time_to(evals: list[dict], target: float) -> float | None:
    """Training seconds at the first evaluation that reaches `target`."""
    return next((e["train_seconds"] for e in evals if e["pass@1"] >= target), None)


def time_to_interpolated(evals: list[dict], target: float) -> float | None:
    """Where the straight line between the last evaluation below `target` and the first at or above it
    crosses it: less sensitive to where the evaluation points happen to fall than `time_to`."""
    for before, after in itertools.pairwise(evals):
        if before["pass@1"] < target <= after["pass@1"]:
            share = (target - before["pass@1"]) / (after["pass@1"] - before["pass@1"])
            return before["train_seconds"] + share * (after["train_seconds"] - before["train_seconds"])
    return 0.0 if evals and evals[0]["pass@1"] >= target else None


def summarise(steps: list[dict], evals: list[dict], completions_per_step: int, target: float) -> dict:
    """Step-time figures, and each eval point placed at the training seconds its step had reached."""
    at = {s["step"]: s["train_seconds"] for s in steps} | {0: 0.0}
    evals = [e | {"train_seconds": at[e["step"]]} for e in evals]
    timed = steps[1:] or steps  # the first step also warms up (engine caches, allocator)
    step_s = statistics.median(s["seconds"] for s in timed)
    return {"steps": len(steps), "median_step_s": step_s, "samples_per_s": completions_per_step / step_s,
            "train_seconds": steps[-1]["train_seconds"], "final_pass@1": evals[-1]["pass@1"],
            "best_pass@1": max(e["pass@1"] for e in evals), "seconds_to_target": time_to(evals, target),
            "seconds_to_target_interpolated": time_to_interpolated(evals, target), "evals": evals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sft", help="an SFT checkpoint directory (default: train one first)")
    parser.add_argument("--budget", type=float, default=300.0, help="training wall seconds per trainer")
    parser.add_argument("--target", type=float, default=0.40, help="held-out pass@1 to reach")
    parser.add_argument("--prompts", type=int, default=32, help="problems per step")
    parser.add_argument("--group", type=int, default=32, help="samples per problem")
    parser.add_argument("--micro", type=int, default=64, help="TRL's per-device micro-batch (completions)")
    parser.add_argument("--eval-every", type=int, default=5, help="steps between held-out evaluations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trl-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.trl_worker:
        return trl_worker(args.sft, args.budget, args.prompts, args.group, args.micro, args.eval_every, args.seed)

    sft = Path(args.sft).resolve() if args.sft else run_rlpractice("sft", ["rl.steps=0"]) / "checkpoints" / "sft"
    run_dir = run_rlpractice("rlpractice", [
        f"model.path={sft}", "sft.steps=0", "rl.steps=100000", f"rl.time_budget_s={args.budget}",
        f"rl.eval_every={args.eval_every}", f"rl.prompts_per_step={args.prompts}",
        f"rl.samples_per_prompt={args.group}", f"seed={args.seed}"])
    if not (OUT / "trl" / "steps.json").exists():
        worker = [sys.executable, __file__, "--trl-worker", f"--sft={sft}", f"--budget={args.budget}",
                  f"--prompts={args.prompts}", f"--group={args.group}", f"--micro={args.micro}",
                  f"--eval-every={args.eval_every}", f"--seed={args.seed}"]
        print("[bench_vs_trl] TRL GRPOTrainer ...", flush=True)
        subprocess.run(worker, cwd=ROOT, check=True)

    per_step = args.prompts * args.group
    ours = summarise(*rlpractice_curve(run_dir), per_step, args.target)
    trl = summarise(*trl_curve(str(sft), args.seed), per_step, args.target)
    t_ours, t_trl = ours["seconds_to_target"], trl["seconds_to_target"]
    result = {
        **meta(),
        "setup": {"sft_checkpoint": str(sft), "budget_s": args.budget, "target_pass@1": args.target,
                  "prompts_per_step": args.prompts, "samples_per_prompt": args.group,
                  "trl_micro_batch": args.micro, "eval_every": args.eval_every, "seed": args.seed},
        "rlpractice": ours, "trl": trl,
        "samples_per_s_ratio": ours["samples_per_s"] / trl["samples_per_s"],
        # None when TRL did not reach the target within the budget: then the budget bounds the ratio
        "time_to_target_ratio": (t_ours / t_trl if t_ours is not None and t_trl is not None else None),
        "time_to_target_ratio_interpolated": (
            ours["seconds_to_target_interpolated"] / trl["seconds_to_target_interpolated"]
            if ours["seconds_to_target_interpolated"] and trl["seconds_to_target_interpolated"] else None),
        "time_to_target_ratio_at_most": (t_ours / trl["train_seconds"] if t_ours is not None and t_trl is None
                                         else None),
    }
    (OUT.parent / "vs_trl.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("rlpractice", "trl")}
                     | {name: {k: v for k, v in r.items() if k != "evals"} for name, r in
                        (("rlpractice", ours), ("trl", trl))}, indent=2))


if __name__ == "__main__":  # vLLM starts worker processes with spawn
    main()
