"""What RL learns from, as a value: each step, the run's reward takes the graded batch and returns the rewards the
update uses and its metrics (`Rewards`). The verifier's rewards (`VerifierReward`, reward.model=null), or a reward
model's scores of the samples (RLHF beside RLVR, `ModelReward`: one call on token ids after grading, each group's
prompt run once), mixed with them:
    reward = reward.model_weight * score + reward.verifier_weight * the verifier's reward.
Each sample keeps its verifier grade, so the verifier's pass rate on the very samples the reward model scored is
the *gold* that the learned reward only stands in for. Every step logs the proxy (mean score), the gold and
sqrt(KL) of the policy from the SFT policy; Gao et al. (2022) found gold first rising then falling in d = sqrt(KL)
while the proxy keeps rising. report.py plots both against sqrt(KL) and says where gold peaked.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from rlpractice.errors import UserError
from rlpractice.learner.steps import sequence_logprobs
from rlpractice.learner.update import sequences
from rlpractice.reward.model import STAGE, load_scorer, score_shared
from rlpractice.rollout.batch import Batch, Group

KL_SAMPLES = 256  # samples per step the KL is estimated on (its spread is small next to its drift over a run)


@dataclass
class Rewards:
    """One step's rewards: what the update learns from ([groups, group size]) and the reward's metrics."""

    values: torch.Tensor
    metrics: dict = field(default_factory=dict)
    scores: list[float] | None = None  # the reward model's score of each sample, in batch order; None: no model


def check_reward(cfg: DictConfig) -> None:
    """Settings a reward model cannot work with, before anything runs."""
    r = cfg.reward
    if not r.model:
        return
    if r.model != "train" and not (Path(r.model) / "config.json").is_file():
        raise UserError(f"config key reward.model={r.model}: not an HF folder (no config.json there); give your "
                        "reward model's folder, train to train one in stage rm, or null for none")
    if cfg.algo.name == "rft" or cfg.algo.dynamic_sampling:
        raise UserError("config key reward.model: rft and algo.dynamic_sampling choose samples by the verifier's "
                        "reward before the reward model scores them; use a policy-gradient algo without "
                        "dynamic_sampling, or reward.model=null")


class VerifierReward:
    """The verifier's rewards, as grading gave them."""

    heldout_score = None  # no proxy to log beside held-out pass@1

    def __call__(self, batch: Batch) -> Rewards:
        return Rewards(batch.rewards())


def make_reward(cfg: DictConfig, policy, ref, tokenizer, run_dir: Path) -> VerifierReward | ModelReward:
    """The reward `reward.model` chooses: the verifier's, or the reward model it names (checkpoints/rm/ when trained
    in this run), loaded here once; `ref`: the frozen SFT policy its KL is measured from."""
    r = cfg.reward
    if not r.model:
        return VerifierReward()
    rm, rm_tokenizer, bf16 = load_scorer(run_dir / "checkpoints" / STAGE if r.model == "train" else Path(r.model),
                                         cfg.learner.device, cfg.learner.bf16)
    if rm_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise UserError(f"reward.model={r.model}: its tokenizer is not the policy's; the reward model reads the "
                        "policy's token ids, so it must share the tokenizer (start it from the SFT checkpoint)")
    return ModelReward(rm, policy, ref, tokenizer.pad_token_id, (r.model_weight, r.verifier_weight),
                       (cfg.rm.token_budget, cfg.algo.token_budget), cfg.learner.share_prompts, bf16)


class ModelReward:
    """Scores a step's samples with the reward model, mixes the scores with the verifier's rewards, and measures the
    policy's sequence-level KL from the frozen SFT policy (the x axis of over-optimisation)."""

    def __init__(self, rm, policy, ref, pad_id: int, weights: tuple[float, float], budgets: tuple[int, int],
                 share_prompts: bool, bf16: bool):
        self.rm, self.policy, self.ref, self.pad_id = rm, policy, ref, pad_id
        self.model_weight, self.verifier_weight = weights
        self.score_budget, self.token_budget = budgets  # padded tokens per micro-batch: rm.*, algo.*
        self.share_prompts, self.bf16 = share_prompts, bf16

    def __call__(self, batch: Batch) -> Rewards:
        t = time.time()
        scores = self.scores(batch.groups)
        verifier = batch.rewards()
        values = self.model_weight * torch.tensor(scores).view(verifier.shape) + self.verifier_weight * verifier
        scored = time.time()
        kl = self.sequence_kl(batch)
        gold = float(np.mean([s.reward >= 1.0 for s in batch.samples]))
        return Rewards(values, {"rlhf/proxy": float(np.mean(scores)), "rlhf/proxy_std": float(np.std(scores)),
                                "rlhf/gold": gold, "rlhf/kl": kl, "rlhf/sqrt_kl": math.sqrt(max(kl, 0.0)),
                                "time/reward_model": scored - t, "time/reference_kl": time.time() - scored}, scores)

    def scores(self, groups: list[Group]) -> list[float]:
        """The reward model's score of every sample of `groups`, in order."""
        owner = [i for i, g in enumerate(groups) for _ in g.samples]
        return score_shared(self.rm, [g.prompt_ids for g in groups], owner, [s.ids for g in groups for s in g.samples],
                            self.score_budget, self.bf16)

    def heldout_score(self, groups: list[Group]) -> float:
        """The mean score of evaluation samples: each evaluation logs it beside held-out pass@1, the proxy beside
        the gold on problems RL never practised."""
        return float(np.mean(self.scores(groups)))

    def sequence_kl(self, batch: Batch) -> float:
        """KL(policy || SFT policy) per sample, estimated on the step's samples (drawn from the policy): mean over
        samples of the sum over sampled tokens of log p - log p_ref. On at most KL_SAMPLES of them, spread evenly
        over the groups: two forwards over all of a step's samples cost about half of the learner's update."""
        seqs = [s for g in batch.groups for s in sequences(g)]
        seqs = seqs[:: math.ceil(len(seqs) / KL_SAMPLES)]
        mine = sequence_logprobs(self.policy, seqs, self.pad_id, self.token_budget, self.share_prompts, self.bf16)
        ref = sequence_logprobs(self.ref, seqs, self.pad_id, self.token_budget, self.share_prompts, self.bf16)
        per_sample = [((a - b) * torch.tensor(s.loss_mask[1:], dtype=torch.float32)).sum().item()
                      for s, a, b in zip(seqs, mine, ref, strict=True)]
        return float(np.mean(per_sample))
