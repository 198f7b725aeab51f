"""Stage 3, practice problems -> RL (GRPO and its variants).

Each step: sample a group of solutions per practice problem (vLLM engines in Ray actors), grade every final
answer (verifier workers), update the policy (group-relative advantages, clipped policy gradient), send the new
weights to the engines, then log and checkpoint. The pieces live where the data flows: rollout/ (sampling),
grading/, algorithm/ (the math), policy_update.py and learner.py (the torch side), rl_metrics.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from rlpractice.checkpoint import load_state, save_state
from rlpractice.errors import UserError
from rlpractice.grading.pool import GradingPool
from rlpractice.learner_group import LocalLearner, learner_bf16, make_learner
from rlpractice.policy_update import make_update
from rlpractice.rlhf import RewardModelReward
from rlpractice.rollout.batch import Batch
from rlpractice.rollout.prefetch import Prefetcher
from rlpractice.rollout.samplers import Samplers
from rlpractice.stages.learning_signal import LearningSignal
from rlpractice.stages.practice import PracticeOrder, draw_batch
from rlpractice.stages.rl_metrics import (
    all_failed,
    curriculum_metrics,
    level_pass_rates,
    log_rollouts,
    step_metrics,
    tool_use_metrics,
    verifier_metrics,
)
from rlpractice.textbook.problems import Problem
from rlpractice.tools.rollout import tool_settings


def run_rl(cfg: DictConfig, model, tokenizer, practice: list[Problem], samplers: Samplers, pool: GradingPool,
           tracker, run_dir: Path, evaluate_fn: Callable[[int], dict], seed: int,
           resume_from: Path | None = None) -> int:
    """RL steps 1..rl.steps (from the step after `resume_from`, a checkpoint of this run), or fewer if
    `rl.time_budget_s` runs out first. Returns the number of the last step done."""
    learner = make_learner(model, cfg.learner, cfg.cluster)  # this process, or learner.num_workers ranks
    try:
        return _run(cfg, learner, tokenizer, practice, samplers, pool, tracker, run_dir, evaluate_fn, seed,
                    resume_from)
    finally:
        learner.full_model()  # `model` holds the last weights
        learner.close()


def _run(cfg: DictConfig, learner, tokenizer, practice: list[Problem], samplers: Samplers, pool: GradingPool,
         tracker, run_dir: Path, evaluate_fn: Callable[[int], dict], seed: int, resume_from: Path | None) -> int:
    rl = cfg.rl
    learner.start(lr=cfg.algo.lr, weight_decay=cfg.algo.weight_decay, betas=(0.9, 0.99),
                  total_steps=rl.steps if cfg.algo.lr_schedule == "cosine" else 0)
    update = make_update(cfg, learner, tokenizer.pad_token_id, run_dir, learner_bf16(cfg.learner))
    # reward.model (None: the verifier); it measures KL on the trainer's copy of the policy
    reward_model = RewardModelReward.from_config(cfg, learner.full_model(), tokenizer, run_dir)
    order = PracticeOrder(practice, seed, curriculum=rl.curriculum)
    signal = LearningSignal(rl.warn_without_signal, rl.stop_without_signal)
    first = 1 if resume_from is None else resume(resume_from, learner, order, tracker) + 1
    if rl.max_staleness > 0 and isinstance(learner, LocalLearner) and learner.model.device.type == "cpu":
        learn_beside_engines(samplers.cores_left_here())
    batches = Prefetcher(lambda step: draw(samplers, pool, order, cfg, step), first, rl.steps, rl.max_staleness)
    started, done = time.time(), first - 1
    out_of_time = lambda: bool(rl.time_budget_s and time.time() - started >= rl.time_budget_s)  # noqa: E731
    bar = tqdm(range(first, rl.steps + 1), desc="rl", unit="step", initial=first - 1, total=rl.steps,
               dynamic_ncols=True)
    try:
        for step in bar:
            t0 = time.time()
            batch = batches.get()  # sampled and graded (ahead of time, with rl.max_staleness)
            if rl.max_staleness == 0:
                samplers.sleep()  # sleep mode: the engines free their GPU memory while the learner trains
            t1 = time.time()
            if all_failed(batch):
                raise UserError(f"the verifier failed on every answer of step {step} (first reason: "
                                f"{batch.samples[0].reason}); stopping instead of training on garbage")
            rlhf = reward_model(batch) if reward_model else {}  # its scores become the reward; proxy, gold, KL
            t2 = time.time()
            learned = update(batch)  # advantages -> clipped policy gradient (or RFT)
            learner.schedule_step()
            t3 = time.time()
            samplers.sync_from(learner.full_model(), run_dir / "policy_sync")  # every engine serves the new weights
            t4 = time.time()
            times = {"wait": t1 - t0, "learn": t3 - t2, "sync": t4 - t3, "step": t4 - t0}
            metrics = step_metrics(batch, learned, times, samplers.restarts) | rlhf
            if learner.schedule is not None:
                metrics["lr"] = learner.lr()
            metrics.update(signal.observe(step, batch, str(run_dir / "rollouts.jsonl")))
            if rl.checkpoint_every and (step % rl.checkpoint_every == 0 or step == rl.steps or out_of_time()):
                # before logging: a run killed in between re-logs this step from the checkpoint
                save_state(run_dir / "checkpoints" / "rl_steps", step, learner.full_model(), tokenizer,
                           learner.optimizer, {"order": batch.order_state, "metrics": metrics}, rl.keep_checkpoints,
                           learner.schedule)
            tracker.log("rl", step, {**metrics, **level_pass_rates(batch), **verifier_metrics(batch),
                                     **batch.curriculum, **tool_use_metrics(batch)})
            log_rollouts(run_dir / "rollouts.jsonl", step, batch, rl.rollouts_logged_per_step)
            bar.set_postfix(pass_rate=f"{metrics['pass_rate']:.3f}", len=f"{metrics['completions/mean_length']:.0f}",
                            s_step=f"{times['step']:.1f}")
            done = step
            if out_of_time():
                print(f"[rl] time budget of {rl.time_budget_s}s reached after step {step}")
                break
            if rl.eval_every and step % rl.eval_every == 0 and step != rl.steps:
                batches.wait()  # the evaluation needs the samplers and graders to itself
                evaluate_fn(step)
    finally:
        batches.close()
    return done


def draw(samplers: Samplers, pool: GradingPool, order: PracticeOrder, cfg: DictConfig, step: int) -> Batch:
    """Step `step`'s batch, drawn from `order` (a batch sampled ahead is drawn again after a resume)."""
    rl, algo = cfg.rl, cfg.algo
    logprobs = wants_sampler_logprobs(step, rl, correcting=algo.get("sampler_is") is True)
    batch = draw_batch(samplers, pool, order, rl.prompts_per_step, rl.samples_per_prompt, algo.dynamic_sampling,
                       algo.max_sampling_rounds, logprobs=logprobs, tools=tool_settings(cfg))
    batch.curriculum = curriculum_metrics(order) if rl.curriculum else {}
    return batch


def resume(checkpoint: Path, learner, order: PracticeOrder, tracker) -> int:
    """Load the optimiser, LR schedule and data position of an RL step checkpoint; returns its step."""
    state = load_state(checkpoint, learner.optimizer, learner.schedule)
    order.restore(state["order"])
    tracker.log_once("rl", state["step"], state["metrics"])  # in case the run died before logging it
    tracker.log("resume", state["step"], {"from": str(checkpoint)})
    print(f"[rl] resuming after step {state['step']} from {checkpoint}")
    return state["step"]


def wants_sampler_logprobs(step: int, rl: DictConfig, correcting: bool = False) -> bool:
    """Whether step `step` asks the engines for their log-probs: always when sampling ahead (they are the
    behaviour policy's, for the importance ratio) or `correcting` the engines' precision (algo.sampler_is), else
    on steps 1, 1 + N, 1 + 2N, ... with N = rl.logprob_mismatch_every, to measure the train/inference mismatch
    (0: never)."""
    every = rl.logprob_mismatch_every
    return rl.max_staleness > 0 or correcting or bool(every and (step - 1) % every == 0)


def learn_beside_engines(cores: list[int]) -> None:
    """Sampling ahead, the engines generate while the learner trains: on a CPU learner, keep it on the cores
    the engines leave free (if any), so the two do not take turns on the same cores."""
    if cores:
        os.sched_setaffinity(0, cores)
        torch.set_num_threads(len(cores))
        print(f"[rl] sampling ahead: the learner computes on core(s) {cores}, beside the engines", flush=True)
