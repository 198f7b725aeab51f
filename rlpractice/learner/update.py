"""From a graded batch and the rewards to learn from to optimiser steps: the update each `algo=` choice makes.

`PolicyGradient` (grpo, dr_grpo, dapo, gspo, rloo, passk): group-relative advantages, then the clipped surrogate.
`RejectionSampling` (rft): keep the correct samples and take an SFT step on them.
Both are called once per RL step with the step's `Batch` and rewards, and return the step's learner metrics.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from rlpractice import model as policy
from rlpractice.algorithm.advantages import advantages, later_turn_advantages
from rlpractice.algorithm.rft import rft_selection
from rlpractice.algorithm.settings import LossSettings
from rlpractice.learner.device import place
from rlpractice.learner.forward import Sequence
from rlpractice.learner.steps import sequence_logprobs, target_tokens
from rlpractice.rollout.batch import Batch, Group


@dataclass(frozen=True)
class TurnCredit:
    """Per-turn credit for episodes (env.credit=turn): the episode's `discount` and a later turn's weight."""

    discount: float
    later_weight: float = 1.0  # env.later_turn_weight: a later turn's advantage times this


def sequences(group: Group, adv: torch.Tensor | None = None, turn_credit: TurnCredit | None = None) -> list[Sequence]:
    """The learner's view of a group: prompt + completion ids, loss on the sampled completion tokens only (not
    on the prompt, nor on observation ids, a tool's or an environment's output: no loss and no ratio there). With
    `turn_credit`, each turn of an episode is a sequence of its own: the ids up to its end, the loss on its tokens,
    its own advantage (the first turn the episode's, a later one `later_turn_advantages` times the credit's
    `later_weight`), so every turn weighs in the loss as a whole completion does."""
    p = group.prompt_ids
    per_turn = adv is not None and turn_credit is not None and all(s.turn_rewards is not None
                                                                     for s in group.samples)
    later = [[turn_credit.later_weight * a for a in turns] for turns in later_turn_advantages(
        [s.turn_rewards for s in group.samples], turn_credit.discount)] if per_turn else None
    out = []
    for j, s in enumerate(group.samples):
        mask = s.observation_mask or [0] * len(s.ids)
        a = 0.0 if adv is None else float(adv[j])
        if later is None:
            out.append(Sequence(p + s.ids, [0] * len(p) + [1 - m for m in mask], a, s.sampler_logps))
            continue
        for (start, end), turn_adv in zip(turn_spans(mask), [a, *later[j]], strict=False):
            out.append(Sequence(p + s.ids[:end], [0] * (len(p) + start) + [1 - m for m in mask[start:end]], turn_adv,
                                s.sampler_logps[:end] if s.sampler_logps else None))
    return out


def turn_spans(observation_mask: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each turn's sampled ids in a completion: the runs between observations. With
    [0, 0, 1, 1, 0, 0, 0]: [(0, 2), (4, 7)]."""
    spans, start = [], None
    for i, m in enumerate([*observation_mask, 1]):
        if not m and start is None:
            start = i
        if m and start is not None:
            spans.append((start, i))
            start = None
    return spans


class PolicyGradient:
    """`algo.num_iterations` passes over the batch; each pass takes `algo.minibatches` optimiser steps, each on
    a slice of the groups. The importance ratio is taken against the sampling policy: the learner's own
    log-probs before the first step when there are several steps (1 and exact otherwise), or, when sampling
    ahead (`off_policy`), the log-probs the engine reported for the tokens it sampled."""

    def __init__(self, learner, algo: DictConfig, loss: LossSettings, pad_id: int, ref_model=None,
                 off_policy: bool = False, forward: dict | None = None, turn_credit: TurnCredit | None = None):
        """`learner`: where the policy learns (learner/local.py, ranks.py); `ref_model`: the frozen reference
        policy, for the KL term (`loss.kl_coef`); `forward`: the learner forward's `share_prompts` (default true)
        and `bf16` (default false)."""
        self.learner, self.algo, self.loss, self.ref_model, self.off_policy = learner, algo, loss, ref_model, off_policy
        self.forward = {"share_prompts": True, "bf16": False, **(forward or {}), "pad_id": pad_id}
        self.skip_zero_advantage = not loss.needs_every_sample  # same update, less compute
        self.turn_credit = turn_credit

    def __call__(self, batch: Batch, rewards: torch.Tensor) -> dict:
        adv = advantages(rewards, self.algo.advantage, self.algo.scale_by_std, self.algo.passk_k)
        return self.update(batch.groups, adv)

    def update(self, groups: list[Group], adv: torch.Tensor) -> dict:
        parts = [p.tolist() for p in np.array_split(np.arange(len(groups)), self.algo.minibatches) if len(p)]
        every = [[s for i in part for s in sequences(groups[i], adv[i], self.turn_credit)]
                 for part in parts]
        # normalisers count every sample of a slice, learned or skipped: skipping changes speed, not the update
        totals = [(len(seqs), target_tokens(seqs)) for seqs in every]
        learned = [[s for s in seqs if s.advantage != 0 or not self.skip_zero_advantage] for seqs in every]
        several_steps = self.algo.num_iterations * len(parts) > 1
        for seqs in learned:  # before the first step: the log-probs of the policy that sampled
            self._old_and_reference(seqs, several_steps)
        steps = [self.learner.policy_gradient_step(seqs, self.loss, totals=total, **self.forward)
                 for _ in range(self.algo.num_iterations) for seqs, total in zip(learned, totals, strict=True) if seqs]
        keys = ["loss", "clip_ratio", "grad_norm", "entropy"] + (["kl"] if self.loss.kl_coef > 0 else [])
        keys += [k for k in (steps[0] if steps else {}) if k.startswith("sampler_is/")]
        out = {k: float(np.mean([m[k] for m in steps])) if steps else 0.0 for k in keys}
        # measured on the first step only: that is when the learner's weights are the sampler's
        if steps and "logprob_mismatch" in steps[0]:
            out["logprob_mismatch"] = steps[0]["logprob_mismatch"]
        out["optimizer_steps"] = len(steps)
        out["learned_sequences"] = sum(len(seqs) for seqs in learned)
        return out

    def _old_and_reference(self, seqs: list[Sequence], several_steps: bool) -> None:
        """Each sequence's `old_logps` (the engine's when sampling ahead, else the learner's own when there are
        several steps; none otherwise: the ratio is 1 and exact) and, for the KL term, its `ref_logps`."""
        kw = {**self.forward, "token_budget": self.loss.token_budget}
        if self.off_policy:
            for s, old in zip(seqs, behaviour_logprobs(seqs), strict=True):
                s.old_logps = old
        elif several_steps and seqs:
            for s, old in zip(seqs, self.learner.logprobs(seqs, **kw), strict=True):
                s.old_logps = old
        if self.loss.kl_coef > 0 and seqs:
            for s, ref in zip(seqs, sequence_logprobs(self.ref_model, seqs, **kw), strict=True):
                s.ref_logps = ref


class RejectionSampling:
    """Best-of-correct (rejection-sampling fine-tuning): one SFT step on the correct samples (all, or the
    shortest per problem). The simplest form of practice: do what worked."""

    def __init__(self, learner, algo: DictConfig, pad_id: int, bf16: bool = False):
        self.learner, self.algo, self.pad_id, self.bf16 = learner, algo, pad_id, bf16

    def __call__(self, batch: Batch, rewards: torch.Tensor) -> dict:
        """Correct is the verifier's word (`rewards` are its own: rft takes no reward model, reward/rewards.py)."""
        return self.update(batch.groups)

    def update(self, groups: list[Group]) -> dict:
        seqs = []
        for g in groups:
            keep = rft_selection(g.rewards, [len(s.ids) for s in g.samples], self.algo.rft_keep)
            seqs += [sequences(g)[j] for j in keep]
        loss = self.learner.lm_step(seqs, pad_id=self.pad_id, token_budget=self.algo.token_budget,
                                    grad_clip=self.algo.grad_clip, bf16=self.bf16) if seqs else 0.0
        return {"loss": loss, "optimizer_steps": int(bool(seqs)), "learned_sequences": len(seqs)}


def behaviour_logprobs(seqs: list[Sequence]) -> list[torch.Tensor]:
    """The sampling engine's log-probs laid out like `sequence_logprobs` (position t predicts token t+1;
    prompt positions are masked out of the loss, so 0 there)."""
    return [torch.tensor([0.0] * (len(s.ids) - 1 - len(s.sampler_logps)) + list(s.sampler_logps)) for s in seqs]


def reference_model(model, run_dir: Path):
    """A frozen copy of the policy RL starts from (the SFT checkpoint when resuming), for the KL term and the
    KL a reward model's run measures."""
    sft_dir = run_dir / "checkpoints" / "sft"
    ref = policy.load(sft_dir)[0] if (sft_dir / "config.json").is_file() else copy.deepcopy(model)
    place(ref, str(model.device))
    return ref.eval().requires_grad_(False)


def make_update(cfg: DictConfig, learner, pad_id: int, ref_model, bf16: bool):
    """The update `algo.name` chooses, with its settings read once from the config; `ref_model`: the frozen
    reference policy (None when nothing needs one)."""
    algo = cfg.algo
    if algo.name == "rft":
        return RejectionSampling(learner, algo, pad_id, bf16)
    loss = LossSettings.from_config(algo, cfg.sampler.max_new_tokens)
    return PolicyGradient(learner, algo, loss, pad_id, ref_model, off_policy=cfg.rl.max_staleness > 0,
                          forward={"share_prompts": cfg.learner.share_prompts, "bf16": bf16},
                          turn_credit=TurnCredit(cfg.env.discount, cfg.env.later_turn_weight)
                          if cfg.env.name and cfg.env.credit == "turn" else None)
