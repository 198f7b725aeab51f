"""Stage 3, practice problems -> RL (GRPO and its variants).

The stage owns its parts, built where they are used: the vLLM engines (Ray actors), the run's reward (reward/),
the held-out evaluation, and for training the learner (learner/) with its update and the practice problems' order.
It evaluates the SFT policy, trains, and evaluates again. Each step: sample a group of solutions per practice
problem (graded as they stream in), reward them, update the policy, send the new weights to the engines, then log
and checkpoint. The pieces live where the data flows: rollout/ (sampling), grading/, reward/, algorithm/ (the
math), learner/ (the torch side), rl_metrics.py.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import ray
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from rlpractice.checkpoint import resume, save_state
from rlpractice.environments.settings import episode_settings
from rlpractice.errors import UserError
from rlpractice.evaluation import evaluate
from rlpractice.grading.pool import GradingPool
from rlpractice.grading.registry import is_failure
from rlpractice.learner.device import learner_bf16
from rlpractice.learner.local import LocalLearner
from rlpractice.learner.ranks import make_learner
from rlpractice.learner.update import make_update, reference_model
from rlpractice.reward.rewards import Rewards, make_reward
from rlpractice.rollout.batch import Batch
from rlpractice.rollout.prefetch import Prefetcher
from rlpractice.rollout.samplers import Samplers
from rlpractice.stages.learning_signal import LearningSignal
from rlpractice.stages.practice import PracticeOrder, draw_batch
from rlpractice.stages.rl_metrics import curriculum_metrics, log_rollouts, step_metrics
from rlpractice.textbook.problems import Textbook


@dataclass
class Results:
    """What the stage reports: held-out evaluations after SFT and after RL, the same with tools off ("sft", "rl";
    only for a run with tools and tools.eval_without_tools), and the number of the last RL step done."""

    sft: dict
    rl: dict
    without_tools: dict
    steps: int


def run_rl(cfg: DictConfig, model, tokenizer, book: Textbook, pool: GradingPool, tracker, run_dir: Path,
           resume_from: Path | None = None) -> Results:
    """Evaluate the SFT policy, then RL steps 1..rl.steps (from the step after `resume_from`, a checkpoint of this
    run; fewer if `rl.time_budget_s` runs out first) on `model`, which ends with the last weights; evaluate again."""
    print(f"[rl] starting {cfg.sampler.num_samplers} vLLM sampler actor(s) in Ray ...", flush=True)
    engines = Samplers(str(resume_from or run_dir / "checkpoints" / "sft"), cfg.sampler, cfg.cluster, cfg.seed,
                       log_dir=run_dir / "logs")
    try:
        print(f"[rl] samplers ready (engine start {max(i.startup_s for i in engines.info):.1f}s)")
        return RLStage(cfg, model, tokenizer, book, engines, pool, tracker, run_dir).run(resume_from)
    finally:
        engines.shutdown()
        # and disconnect: Ray holds back repeated engine log lines for a few seconds (deduplication), and they
        # must come out now, not after the run's last words (an error message must be the last line)
        ray.shutdown()


class RLStage:
    def __init__(self, cfg: DictConfig, model, tokenizer, book: Textbook, engines: Samplers, pool: GradingPool,
                 tracker, run_dir: Path):
        self.cfg, self.model, self.tokenizer, self.book, self.engines = cfg, model, tokenizer, book, engines
        self.pool, self.tracker, self.run_dir = pool, tracker, run_dir
        self.episodes = episode_settings(cfg)  # the run's tools or environment; None: one completion per sample
        # the frozen SFT policy, loaded once: for the KL term, and the KL a reward model's run measures
        needs_ref = (cfg.algo.name != "rft" and cfg.algo.kl_coef > 0) or cfg.reward.model
        self.ref = reference_model(model, run_dir) if needs_ref else None
        self.reward = make_reward(cfg, model, self.ref, tokenizer, run_dir)  # the verifier's, or a reward model's

    def run(self, resume_from: Path | None) -> Results:
        # the same model with its tools off
        no_tools = bool(self.episodes and self.episodes.tools and self.cfg.tools.eval_without_tools)
        before = lambda stage: self.cfg.resume and self.tracker.logged(stage, 0)  # noqa: E731 - logged before a stop
        sft = before("eval") or self.evaluate(0)
        without = {"sft": before("eval_no_tools") or self.evaluate(0, "eval_no_tools")} if no_tools else {}
        if self.cfg.rl.steps == 0:
            return Results(sft, sft, without, 0)
        steps = self.train(resume_from)
        rl = self.evaluate(steps)
        if no_tools:
            without["rl"] = self.evaluate(steps, "eval_no_tools")
        return Results(sft, rl, without, steps)

    def evaluate(self, step: int, stage: str = "eval") -> dict:
        """Held-out pass@k and maj@n (eval_no_tools: with the run's tools off), logged and printed."""
        t, ev = time.time(), self.cfg.eval
        result = evaluate(self.engines, self.pool, list(self.book.heldout), ev.samples_per_problem, list(ev.k),
                          self.episodes if stage == "eval" else None, self.reward.heldout_score)
        result["time"] = time.time() - t
        self.tracker.log(stage, step, result)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in result.items() if k.startswith(("pass@", "maj@")))
        print(f"[{stage}] step {step}: held-out {shown} ({result['time']:.1f}s)", flush=True)
        return result

    def train(self, resume_from: Path | None) -> int:
        """RL steps until rl.steps or the time budget; returns the number of the last step done."""
        cfg, rl = self.cfg, self.cfg.rl
        self.learner = make_learner(self.model, cfg.learner, cfg.cluster)  # this process, or learner.num_workers ranks
        try:
            self.learner.start(lr=cfg.algo.lr, weight_decay=cfg.algo.weight_decay, betas=(0.9, 0.99),
                               total_steps=rl.steps if cfg.algo.lr_schedule == "cosine" else 0)
            self.update = make_update(cfg, self.learner, self.tokenizer.pad_token_id, self.ref,
                                      learner_bf16(cfg.learner))
            self.order = PracticeOrder(self.book.practice, cfg.seed, curriculum=rl.curriculum)
            self.signal = LearningSignal(rl.warn_without_signal, rl.stop_without_signal)
            first = 1
            if resume_from is not None:
                state = resume("rl", resume_from, self.learner, self.tracker)
                self.order.restore(state["order"])
                first = state["step"] + 1
            if rl.max_staleness > 0 and isinstance(self.learner, LocalLearner) and self.model.device.type == "cpu":
                learn_beside_engines(self.engines.cores_left_here())
            batches = Prefetcher(self.draw, first, rl.steps, rl.max_staleness)
            try:
                return self.loop(batches, first)
            finally:
                batches.close()
        finally:
            self.learner.full_model()  # `model` holds the last weights
            self.learner.close()

    def loop(self, batches: Prefetcher, first: int) -> int:
        rl, started, done = self.cfg.rl, time.time(), first - 1
        bar = tqdm(range(first, rl.steps + 1), desc="rl", unit="step", initial=first - 1, total=rl.steps,
                   dynamic_ncols=True)
        for step in bar:
            clock = [time.time()]
            batch = batches.get()  # sampled and graded (ahead of time, with rl.max_staleness)
            if rl.max_staleness == 0:
                self.engines.sleep()  # sleep mode: the engines free their GPU memory while the learner trains
            if all(is_failure(s.reason) for s in batch.samples):  # crashed or timed out on every one
                raise UserError(f"the verifier failed on every answer of step {step} (first reason: "
                                f"{batch.samples[0].reason}); stopping instead of training on garbage")
            clock.append(time.time())
            rewards = self.reward(batch)  # what the update learns from, and the reward's metrics
            clock.append(time.time())
            learned = self.update(batch, rewards.values)  # advantages -> clipped policy gradient (or RFT)
            self.learner.schedule_step()  # the LR schedule's one step per RL step
            clock.append(time.time())
            self.engines.sync_from(self.learner.full_model(), self.run_dir / "policy_sync")  # every engine serves them
            clock.append(time.time())
            out_of_time = bool(rl.time_budget_s and time.time() - started >= rl.time_budget_s)
            metrics = self.record(step, batch, rewards, learned, clock, last=step == rl.steps or out_of_time)
            bar.set_postfix(pass_rate=f"{metrics['pass_rate']:.3f}", len=f"{metrics['completions/mean_length']:.0f}",
                            s_step=f"{metrics['time/step']:.1f}")
            done = step
            if out_of_time:
                print(f"[rl] time budget of {rl.time_budget_s}s reached after step {step}")
                break
            if rl.eval_every and step % rl.eval_every == 0 and step != rl.steps:
                batches.wait()  # the evaluation needs the samplers and graders to itself
                self.evaluate(step)
        return done

    def record(self, step: int, batch: Batch, rewards: Rewards, learned: dict, clock: list[float],
               last: bool) -> dict:
        """The step's metrics, checkpointed (before logging: a run killed in between re-logs this step from the
        checkpoint), then logged with a few of its rollouts."""
        rl = self.cfg.rl
        times = {"wait": clock[1] - clock[0], "learn": clock[3] - clock[2], "sync": clock[4] - clock[3],
                 "step": clock[4] - clock[0]}
        metrics = step_metrics(batch, rewards.values, learned, times, self.engines.restarts) | rewards.metrics
        if self.learner.schedule is not None:
            metrics["lr"] = self.learner.lr()
        metrics.update(self.signal.observe(step, batch, rewards.values, str(self.run_dir / "rollouts.jsonl")))
        if rl.checkpoint_every and (step % rl.checkpoint_every == 0 or last):
            save_state(self.run_dir / "checkpoints" / "rl_steps", step, self.learner, self.tokenizer,
                       {"order": batch.order_state, "metrics": metrics}, rl.keep_checkpoints)
        self.tracker.log("rl", step, metrics)
        rows = log_rollouts(self.run_dir / "rollouts.jsonl", step, batch, rewards.scores, rl.rollouts_logged_per_step)
        self.tracker.log_table("rl", step, "completions", rows)  # W&B's view of the same rows
        return metrics

    def draw(self, step: int) -> Batch:
        """Step `step`'s batch, drawn from the practice order (a batch sampled ahead is drawn again after a resume)."""
        rl, algo = self.cfg.rl, self.cfg.algo
        logprobs = wants_sampler_logprobs(step, rl, correcting=algo.get("sampler_is") is True)
        batch = draw_batch(self.engines, self.pool, self.order, self.cfg, logprobs, self.episodes)
        batch.curriculum = curriculum_metrics(self.order) if rl.curriculum else {}
        return batch


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
