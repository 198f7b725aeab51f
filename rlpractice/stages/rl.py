"""Stage 3, practice problems -> RL (GRPO).

One step, top to bottom:
  sample   a group of `samples_per_prompt` solutions for each of `prompts_per_step` practice problems
  grade    every final answer with the verifier (streamed: chunks are graded as they arrive)
  learn    group-relative advantages -> clipped policy-gradient update of the torch policy
  sync     the new weights go to every vLLM engine (no restart)
"""

from __future__ import annotations

import copy
import json
import os
import resource
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from rlpractice import model as policy
from rlpractice.algorithm.advantages import advantages, zero_variance_fraction
from rlpractice.checkpoint import load_state, save_state
from rlpractice.errors import UserError
from rlpractice.grading.pool import GradingPool
from rlpractice.grading.registry import is_failure
from rlpractice.learner import Sequence, lm_step, place, policy_gradient_step, sequence_logprobs, use_bf16
from rlpractice.rollout.samplers import Samplers
from rlpractice.stages.practice import PracticeOrder
from rlpractice.textbook.problems import Problem


@dataclass
class Sample:
    """One sampled solution, graded."""

    ids: list[int]  # completion token ids (ending in EOS unless cut at max_new_tokens)
    text: str
    reward: float
    reason: str  # the verifier's short explanation
    finish: str  # "stop" or "length"
    sampler_logps: list[float] | None  # the vLLM engine's log-prob of each sampled token (when asked for)
    parts: dict[str, float] | None = None  # each verifier's reward, when several are combined


def collect_groups(samplers: Samplers, pool: GradingPool, problems: list[Problem], n: int, logprobs: bool = True):
    """Sample and grade: per problem, {"prompt_ids": [...], "samples": [Sample, ...]}; with `logprobs`, each
    sample keeps the engine's log-probs of its tokens."""
    groups: list[dict] = [{"prompt_ids": None, "samples": []} for _ in problems]
    grade_s = 0.0
    for i, chunk in samplers.sample([p.prompt for p in problems], n, logprobs=logprobs):
        t = time.time()
        comps = chunk["completions"]
        grades = pool.grade([c[1] for c in comps], [problems[i].answer] * len(comps),
                            [problems[i].columns] * len(comps))
        grade_s += time.time() - t
        groups[i]["prompt_ids"] = chunk["prompt_ids"]
        groups[i]["samples"].extend(
            Sample(ids, text, g.reward, g.reason, finish, logps, g.parts)
            for (ids, text, finish, logps), g in zip(comps, grades, strict=True)
        )
    return groups, grade_s


def sample_batch(samplers: Samplers, pool: GradingPool, order: PracticeOrder, prompts: int, n: int,
                 algo: DictConfig, logprobs: bool = True) -> tuple[list[Problem], list[dict], float, float]:
    """`prompts` problems with their graded groups. With `algo.dynamic_sampling` (DAPO), groups whose
    rewards are all equal (no signal) are dropped and more problems are sampled to refill the batch,
    for at most `algo.max_sampling_rounds` rounds. Returns (problems, groups, grade seconds, fraction
    of sampled groups filtered out)."""
    problems, groups, grade_s, seen = [], [], 0.0, 0
    rounds = algo.max_sampling_rounds if algo.dynamic_sampling else 1
    for _ in range(rounds):
        batch = order.take(prompts - len(groups))
        new, secs = collect_groups(samplers, pool, batch, n, logprobs)
        grade_s += secs
        seen += len(new)
        for p, g in zip(batch, new, strict=True):
            rewards = [s.reward for s in g["samples"]]
            order.record(p, rewards)
            if not algo.dynamic_sampling or max(rewards) != min(rewards):
                problems.append(p)
                groups.append(g)
        if len(groups) == prompts:
            break
    filtered = 1.0 - len(groups) / seen
    if not groups:  # nothing informative at all: keep the last round (zero advantages, no update)
        problems, groups = batch, new
    return problems, groups, grade_s, filtered


def update_policy(model, optimizer, groups: list[dict], adv: torch.Tensor, algo: DictConfig, pad_id: int,
                  max_tokens: int, ref_model=None, off_policy: bool = False, share_prompts: bool = True,
                  bf16: bool = False) -> dict:
    """`algo.num_iterations` passes over the samples; each pass takes `algo.minibatches` optimiser steps,
    each on a slice of the groups. The ratio is taken against the sampling policy's log-probs
    (recomputed by the learner before the first update when there is more than one update). With
    `off_policy` (samples drawn by an older policy, rl.max_staleness > 0) the ratio is taken against the
    log-probs the vLLM engine reported for the tokens it sampled: the importance correction for staleness.
    `ref_model` (only when algo.kl_coef > 0) is the frozen reference for the KL penalty.
    `share_prompts` (learner.share_prompts) runs each group's prompt once per micro-batch; `bf16` runs the
    forwards in bf16 autocast."""
    parts = [part.tolist() for part in np.array_split(np.arange(len(groups)), algo.minibatches) if len(part)]
    # A zero-advantage sample adds nothing to the policy-gradient term; unless a KL or entropy term
    # applies, skipping it saves compute and changes nothing.
    keep_all = algo.kl_coef > 0 or algo.entropy_coef > 0
    part_seqs = [
        [
            Sequence(groups[i]["prompt_ids"] + s.ids, [0] * len(groups[i]["prompt_ids"]) + [1] * len(s.ids),
                     float(adv[i, j]), s.sampler_logps)
            for i in part
            for j, s in enumerate(groups[i]["samples"])
            if keep_all or adv[i, j] != 0
        ]
        for part in parts
    ]
    several_updates = algo.num_iterations * len(parts) > 1
    if off_policy:
        olds = [behaviour_logprobs(seqs) for seqs in part_seqs]
    else:
        olds = [sequence_logprobs(model, seqs, pad_id, algo.token_budget, share_prompts, bf16)
                if several_updates and seqs else None for seqs in part_seqs]
    refs = [sequence_logprobs(ref_model, seqs, pad_id, algo.token_budget, share_prompts, bf16)
            if ref_model is not None and seqs else None for seqs in part_seqs]
    steps: list[dict] = []
    for _ in range(algo.num_iterations):
        for part, seqs, old, ref in zip(parts, part_seqs, olds, refs, strict=True):
            if seqs:
                steps.append(policy_gradient_step(
                    model, optimizer, seqs, old, pad_id=pad_id, token_budget=algo.token_budget,
                    grad_clip=algo.grad_clip, eps_low=algo.epsilon_low, eps_high=algo.epsilon_high,
                    aggregation=algo.loss_aggregation, num_sequences=len(part) * adv.shape[1],
                    max_tokens=max_tokens, ratio_level=algo.ratio_level, ref_logps=ref, kl_coef=algo.kl_coef,
                    kl_estimator=algo.kl_estimator, entropy_coef=algo.entropy_coef, share_prompts=share_prompts,
                    bf16=bf16))
    keys = ["loss", "clip_ratio", "grad_norm", "entropy"] + (["kl"] if ref_model is not None else [])
    out = {k: float(np.mean([m[k] for m in steps])) if steps else 0.0 for k in keys}
    # measured on the first update only: that is when the learner's weights are the sampler's
    if steps and "logprob_mismatch" in steps[0]:
        out["logprob_mismatch"] = steps[0]["logprob_mismatch"]
    out["optimizer_steps"] = len(steps)
    out["learned_sequences"] = sum(len(seqs) for seqs in part_seqs)
    return out


def behaviour_logprobs(seqs: list[Sequence]) -> list[torch.Tensor]:
    """The sampling engine's log-probs laid out like `sequence_logprobs` (position t predicts token t+1;
    prompt positions are masked out of the loss, so 0 there)."""
    return [torch.tensor([0.0] * (len(s.ids) - 1 - len(s.sampler_logps)) + list(s.sampler_logps)) for s in seqs]


def rft_update(model, optimizer, groups: list[dict], algo: DictConfig, pad_id: int, bf16: bool = False) -> dict:
    """Best-of-correct (rejection-sampling fine-tuning): keep the correct samples (all, or the shortest
    per problem) and take one SFT step on them. The simplest form of practice: do what worked."""
    seqs = []
    for g in groups:
        correct = [s for s in g["samples"] if s.reward >= 1.0]
        if algo.rft_keep == "shortest" and correct:
            correct = [min(correct, key=lambda s: len(s.ids))]
        seqs += [Sequence(g["prompt_ids"] + s.ids, [0] * len(g["prompt_ids"]) + [1] * len(s.ids)) for s in correct]
    loss = lm_step(model, optimizer, seqs, pad_id, algo.token_budget, algo.grad_clip, bf16) if seqs else 0.0
    return {"loss": loss, "optimizer_steps": int(bool(seqs)), "learned_sequences": len(seqs)}


def reference_model(model, run_dir: Path):
    """A frozen copy of the policy RL starts from (the SFT checkpoint when resuming), for the KL term."""
    sft_dir = run_dir / "checkpoints" / "sft"
    ref = policy.load(sft_dir)[0] if (sft_dir / "config.json").is_file() else copy.deepcopy(model)
    place(ref, str(model.device))
    return ref.eval().requires_grad_(False)


def run_rl(cfg: DictConfig, model, tokenizer, practice: list[Problem], samplers: Samplers, pool: GradingPool,
           tracker, run_dir: Path, evaluate_fn: Callable[[int], dict], seed: int,
           resume_from: Path | None = None) -> int:
    """RL steps 1..rl.steps (or from the step after `resume_from`, a checkpoint of this run), or fewer if
    `rl.time_budget_s` runs out first. Returns the number of the last step done."""
    rl, algo = cfg.rl, cfg.algo
    optimizer = torch.optim.AdamW(model.parameters(), lr=algo.lr, weight_decay=algo.weight_decay, betas=(0.9, 0.99))
    order = PracticeOrder(practice, seed, curriculum=rl.curriculum)
    ref_model = reference_model(model, run_dir) if algo.name != "rft" and algo.kl_coef > 0 else None
    first = 1
    if resume_from is not None:
        state = load_state(resume_from, optimizer)
        order.restore(state["order"])
        first = state["step"] + 1
        tracker.log_once("rl", state["step"], state["metrics"])  # in case the run died before logging it
        tracker.log("resume", state["step"], {"from": str(resume_from)})
        print(f"[rl] resuming after step {state['step']} from {resume_from}")
    started, done = time.time(), first - 1
    budget_spent = lambda: bool(rl.time_budget_s and time.time() - started >= rl.time_budget_s)  # noqa: E731
    bar = tqdm(range(first, rl.steps + 1), desc="rl", unit="step", dynamic_ncols=True, initial=first - 1,
               total=rl.steps)
    if rl.max_staleness > 0 and model.device.type == "cpu":
        learn_beside_engines(samplers.cores_left_here())
    batches = Prefetcher(lambda step: sample_job(samplers, pool, order, rl, algo, step), first, rl.steps,
                         rl.max_staleness)
    try:
        for step in bar:
            m = _rl_step(step, cfg, model, tokenizer, optimizer, ref_model, samplers, batches, tracker, run_dir,
                         last=lambda s=step: s == rl.steps or budget_spent())
            bar.set_postfix(pass_rate=f"{m['pass_rate']:.3f}", loss=f"{m.get('loss', 0.0):.4f}",
                            s_step=f"{m['time/step']:.1f}")
            done = step
            if budget_spent():
                print(f"[rl] time budget of {rl.time_budget_s}s reached after step {step}")
                break
            if rl.eval_every and (step % rl.eval_every == 0) and step != rl.steps:
                batches.wait()  # the evaluation uses the samplers and graders too
                evaluate_fn(step)
    finally:
        batches.close()
    return done


def learn_beside_engines(cores: list[int]) -> None:
    """Sampling ahead, the engines generate while the learner trains: on a CPU learner, keep it on the cores
    the engines leave free (if any), so the two do not take turns on the same cores."""
    if cores:
        os.sched_setaffinity(0, cores)
        torch.set_num_threads(len(cores))
        print(f"[rl] sampling ahead: the learner computes on core(s) {cores}, beside the engines", flush=True)


class Prefetcher:
    """The batches of steps first..last, sampled and graded by `job` on a background thread.

    max_staleness 0: each batch is started when its step begins (synchronous). 1: the batch of step t+1
    is started as soon as step t has its own, so the engines generate it (with the weights they hold,
    one update old) while the learner trains on step t; Ray queues the weight sync behind that
    generation. Jobs run one at a time, in order, so a batch's data position is well defined.
    """

    def __init__(self, job: Callable[[int], dict], first: int, last: int, max_staleness: int):
        self.job, self.next, self.last, self.ahead = job, first, last, max_staleness
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rl-sampling")
        self.pending: deque[Future] = deque()

    def _fill(self, n: int) -> None:
        while len(self.pending) < n and self.next <= self.last:
            self.pending.append(self.pool.submit(self.job, self.next))
            self.next += 1

    def get(self) -> dict:
        """This step's batch (waiting for it if needed); starts the next ones per max_staleness."""
        self._fill(1)
        batch = self.pending.popleft().result()
        self._fill(self.ahead)
        return batch

    def wait(self) -> None:
        for f in list(self.pending):
            f.exception()  # waits; a failure surfaces when that batch is taken

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def wants_sampler_logprobs(step: int, rl: DictConfig) -> bool:
    """Whether step `step` asks the engines for their log-probs: always when sampling ahead (they are the
    behaviour policy's, for the importance ratio), else on steps 1, 1 + N, 1 + 2N, ... with N =
    rl.logprob_mismatch_every, to measure the train/inference mismatch (0: never)."""
    every = rl.logprob_mismatch_every
    return rl.max_staleness > 0 or bool(every and (step - 1) % every == 0)


def sample_job(samplers: Samplers, pool: GradingPool, order: PracticeOrder, rl: DictConfig, algo: DictConfig,
               step: int) -> dict:
    """Step `step`'s batch, with the data position and curriculum view right after drawing it (what a
    checkpoint of that step keeps: batches sampled ahead are drawn again after a resume)."""
    t = time.time()
    problems, groups, grade_s, filtered = sample_batch(samplers, pool, order, rl.prompts_per_step,
                                                      rl.samples_per_prompt, algo,
                                                      wants_sampler_logprobs(step, rl))
    return {"problems": problems, "groups": groups, "grade_s": grade_s, "filtered": filtered,
            "sample_s": time.time() - t - grade_s, "order": order.state(),
            "curriculum": curriculum_metrics(order) if rl.curriculum else {}}


def _rl_step(step: int, cfg: DictConfig, model, tokenizer, optimizer, ref_model, samplers: Samplers,
             batches: Prefetcher, tracker, run_dir: Path, last: Callable[[], bool]) -> dict:
    """One RL step: take the sampled, graded batch; learn; sync the weights; checkpoint; log."""
    rl, algo = cfg.rl, cfg.algo
    bf16 = use_bf16(cfg.learner.bf16, model.device)
    t0 = time.time()
    batch = batches.get()
    problems, groups = batch["problems"], batch["groups"]
    if rl.max_staleness == 0:
        samplers.sleep()  # sleep mode: the engines free their GPU memory for the learner (counts in time/wait)
    t_sampled = time.time()

    rewards = torch.tensor([[s.reward for s in g["samples"]] for g in groups], dtype=torch.float32)
    failures = sum(is_failure(s.reason) for g in groups for s in g["samples"])
    if failures == rewards.numel():
        raise UserError(f"the verifier failed on every answer of step {step} "
                        f"(first reason: {groups[0]['samples'][0].reason}); stopping instead of "
                        "training on garbage")
    if algo.name == "rft":
        learn = rft_update(model, optimizer, groups, algo, tokenizer.pad_token_id, bf16)
    else:
        adv = advantages(rewards, algo.advantage, algo.scale_by_std)
        learn = update_policy(model, optimizer, groups, adv, algo, tokenizer.pad_token_id,
                              cfg.sampler.max_new_tokens, ref_model, off_policy=rl.max_staleness > 0,
                              share_prompts=cfg.learner.share_prompts, bf16=bf16)
    t_learned = time.time()
    samplers.sync_from(model, run_dir / "policy_sync")  # with sampling ahead, runs after the generation under way
    t_end = time.time()

    lengths = [len(s.ids) for g in groups for s in g["samples"]]
    metrics = {
        "pass_rate": rewards.ge(1.0).float().mean().item(),
        "samples": rewards.numel(),
        "reward": rewards.mean().item(),
        "reward_std": rewards.std(dim=1, unbiased=False).mean().item(),
        "frac_reward_zero_std": zero_variance_fraction(rewards),
        "completions/mean_length": float(np.mean(lengths)),
        "completions/clipped_ratio": float(np.mean([s.finish == "length" for g in groups for s in g["samples"]])),
        "verifier/failures": failures,
        "sampler/restarts": samplers.restarts,
        "dynamic_sampling/filtered_fraction": batch["filtered"],
        **learn,
        "time/sample": batch["sample_s"],  # generation (on the sampling thread when overlapped)
        "time/grade": batch["grade_s"],
        "time/wait": t_sampled - t0,  # how long the learner waited for this batch
        "time/learn": t_learned - t_sampled,
        "time/sync": t_end - t_learned,
        "time/step": t_end - t0,
        "memory/peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # the trainer process
    }
    if rl.checkpoint_every and (step % rl.checkpoint_every == 0 or last()):
        # checkpoint before logging: a run killed in between re-logs this step from the checkpoint
        save_state(run_dir / "checkpoints" / "rl_steps", step, model, tokenizer, optimizer,
                   {"order": batch["order"], "metrics": metrics}, rl.keep_checkpoints)
    metrics.update(level_pass_rates(problems, rewards))
    metrics.update(verifier_metrics(groups))
    metrics.update(batch["curriculum"])
    tracker.log("rl", step, metrics)
    _log_rollouts(run_dir / "rollouts.jsonl", step, problems, groups, rl.rollouts_logged_per_step)
    return metrics


def level_pass_rates(problems: list[Problem], rewards: torch.Tensor) -> dict:
    """Pass rate of this step's groups per textbook difficulty level."""
    out = {}
    for level in sorted({p.level for p in problems}):
        rows = [i for i, p in enumerate(problems) if p.level == level]
        out[f"level{level}/pass_rate"] = rewards[rows].ge(1.0).float().mean().item()
    return out


def curriculum_metrics(order: PracticeOrder) -> dict:
    """How the curriculum's view of the practice set moves: how much of it has been tried, and how much
    of that looks solved (estimated pass rate > 0.9) or hopeless (< 0.1)."""
    estimates = [order.pass_estimate(p) for p in order.problems if p.question in order.stats]
    seen = max(len(estimates), 1)
    return {"curriculum/seen_fraction": len(estimates) / len(order.problems),
            "curriculum/solved_fraction": sum(e > 0.9 for e in estimates) / seen,
            "curriculum/hopeless_fraction": sum(e < 0.1 for e in estimates) / seen}


def verifier_metrics(groups: list[dict]) -> dict:
    """With several verifiers: each one's mean reward, and how often it applied (did not return None)."""
    samples = [s for g in groups for s in g["samples"]]
    names = sorted({n for s in samples if s.parts for n in s.parts})
    out = {}
    for n in names:
        applied = [s.parts[n] for s in samples if s.parts and n in s.parts]
        out[f"verifier/{n}/reward"] = float(np.mean(applied))
        out[f"verifier/{n}/applied"] = len(applied) / len(samples)
    return out


def _log_rollouts(path: Path, step: int, problems: list[Problem], groups: list[dict], per_step: int) -> None:
    """A few sampled solutions per step with their reward and the verifier's reason, for reading."""
    with open(path, "a") as f:
        for p, g in list(zip(problems, groups, strict=True))[:per_step]:
            s = g["samples"][0]
            f.write(json.dumps({"step": step, "prompt": p.prompt, "question": p.question, "answer": p.answer,
                                "completion": s.text, "reward": s.reward, "reason": s.reason,
                                **({"parts": s.parts} if s.parts else {})}) + "\n")
