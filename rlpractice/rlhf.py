"""A reward model as RL's reward (RLHF beside RLVR), and its over-optimisation made visible.

With `reward.model` set, the trainer scores every sample of a step with the reward model: one call on token ids
after grading, each group's prompt run once (stages/reward_model.py `score_shared`). The update then learns from
    reward = reward.model_weight * score + reward.verifier_weight * the verifier's reward.
Each sample keeps its verifier result, so the verifier's pass rate on the very samples the reward model scored is
the *gold* that the learned reward only stands in for. Every step logs the proxy (mean score), the gold and
sqrt(KL) of the policy from the SFT policy; Gao et al. (2022) found gold first rising then falling in d = sqrt(KL)
while the proxy keeps rising. `report` plots both against sqrt(KL) and says where gold peaked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from rlpractice.errors import UserError
from rlpractice.learner import place, sequence_logprobs, use_bf16
from rlpractice.policy_update import reference_model, sequences
from rlpractice.rollout.batch import Batch, Group
from rlpractice.stages.reward_model import STAGE, load_reward_model, score_shared
from rlpractice.tracking import read_metrics

KL_SAMPLES = 256  # samples per step the KL is estimated on (its spread is small next to its drift over a run)


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


class RewardModelReward:
    """Scores a step's samples with the reward model, sets the reward the update learns from, and measures the
    policy's sequence-level KL from the frozen SFT policy (the x axis of over-optimisation)."""

    def __init__(self, rm, policy, ref, pad_id: int, weights: tuple[float, float], budgets: tuple[int, int],
                 share_prompts: bool, bf16: bool):
        self.rm, self.policy, self.ref, self.pad_id = rm, policy, ref, pad_id
        self.model_weight, self.verifier_weight = weights
        self.score_budget, self.token_budget = budgets  # padded tokens per micro-batch: rm.*, algo.*
        self.share_prompts, self.bf16 = share_prompts, bf16

    @classmethod
    def from_config(cls, cfg: DictConfig, policy, tokenizer, run_dir: Path) -> RewardModelReward | None:
        """The scorer `reward.model` names (checkpoints/rm/ when trained in this run); None without one."""
        r = cfg.reward
        if not r.model:
            return None
        path = run_dir / "checkpoints" / STAGE if r.model == "train" else Path(r.model)
        rm, rm_tokenizer = load_reward_model(path)
        if rm_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise UserError(f"reward.model={r.model}: its tokenizer is not the policy's; the reward model reads the "
                            "policy's token ids, so it must share the tokenizer (start it from the SFT checkpoint)")
        place(rm, cfg.learner.device)
        rm.requires_grad_(False)
        bf16 = use_bf16(cfg.learner.bf16, rm.device)
        return cls(rm, policy, reference_model(policy, run_dir), tokenizer.pad_token_id,
                   (r.model_weight, r.verifier_weight), (cfg.rm.token_budget, cfg.algo.token_budget),
                   cfg.learner.share_prompts, bf16)

    def __call__(self, batch: Batch) -> dict:
        """Score `batch`, set each sample's `rm_score` and `trained_reward`; the step's RLHF metrics."""
        t = time.time()
        owner = [i for i, g in enumerate(batch.groups) for _ in g.samples]
        scores = score_shared(self.rm, [g.prompt_ids for g in batch.groups], owner, [s.ids for s in batch.samples],
                              self.score_budget, self.bf16)
        for s, value in zip(batch.samples, scores, strict=True):
            s.rm_score = value
            s.trained_reward = self.model_weight * value + self.verifier_weight * s.reward
        scored = time.time()
        kl = self.sequence_kl(batch)
        gold = float(np.mean([s.reward >= 1.0 for s in batch.samples]))
        return {"rlhf/proxy": float(np.mean(scores)), "rlhf/proxy_std": float(np.std(scores)), "rlhf/gold": gold,
                "rlhf/kl": kl, "rlhf/sqrt_kl": math.sqrt(max(kl, 0.0)),
                "time/reward_model": scored - t, "time/reference_kl": time.time() - scored}

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


def heldout_proxy(cfg: DictConfig, path: Path | None) -> Callable[[list[Group]], float] | None:
    """The reward model's mean score of evaluation samples (None without a reward model): each evaluation logs
    it beside held-out pass@1, the proxy beside the gold on problems RL never practised."""
    if path is None:
        return None
    rm, _ = load_reward_model(path)
    place(rm, cfg.learner.device)
    rm.requires_grad_(False)
    bf16 = use_bf16(cfg.learner.bf16, rm.device)

    def mean_score(groups: list[Group]) -> float:
        owner = [i for i, g in enumerate(groups) for _ in g.samples]
        scores = score_shared(rm, [g.prompt_ids for g in groups], owner, [s.ids for g in groups for s in g.samples],
                              cfg.rm.token_budget, bf16)
        return float(np.mean(scores))

    return mean_score


def over_optimisation(metrics_path: Path) -> dict:
    """Where the gold peaked and how far it fell by the end: held-out pass@1 at the evaluations, and the verifier
    pass rate of the trained-on samples per step; with the proxy and sqrt(KL) at the end."""
    rows = read_metrics(metrics_path)
    rl = [r for r in rows if r["stage"] == "rl" and "rlhf/proxy" in r]
    ev = [r for r in rows if r["stage"] == "eval"]
    out = {}
    if ev:
        best = max(ev, key=lambda r: r["pass@1"])
        out |= {"rlhf_gold_peak_step": best["step"], "rlhf_gold_peak_pass_at_1": best["pass@1"],
                "rlhf_gold_final_pass_at_1": ev[-1]["pass@1"], "rlhf_gold_fall": best["pass@1"] - ev[-1]["pass@1"]}
    if rl:
        best = max(rl, key=lambda r: r["rlhf/gold"])
        out |= {"rlhf_step_gold_peak_step": best["step"], "rlhf_step_gold_peak": best["rlhf/gold"],
                "rlhf_step_gold_final": rl[-1]["rlhf/gold"], "rlhf_proxy_first": rl[0]["rlhf/proxy"],
                "rlhf_proxy_final": rl[-1]["rlhf/proxy"], "rlhf_sqrt_kl_final": rl[-1]["rlhf/sqrt_kl"]}
    return out


def plot_over_optimisation(metrics_path: Path, out_png: Path) -> Path:
    """Proxy (reward-model score, left axis) and gold (verifier pass rate on the same samples, and held-out pass@1
    at the evaluations; right axis) against sqrt(KL) from the SFT policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    rl = [r for r in rows if r["stage"] == "rl" and "rlhf/proxy" in r]
    d = {r["step"]: r["rlhf/sqrt_kl"] for r in rl}
    ev = [r for r in rows if r["stage"] == "eval" and (r["step"] == 0 or r["step"] in d)]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    # points, not lines, for the per-step values: the KL estimate is noisy, so steps do not come in x order
    ax.plot([r["rlhf/sqrt_kl"] for r in rl], [r["rlhf/proxy"] for r in rl], color="tab:red", marker=".",
            linestyle="none", label="proxy: reward-model score, per step")
    ax.set_xlabel("sqrt(KL(policy || SFT policy)), nats^0.5 per sample")
    ax.set_ylabel("reward-model score", color="tab:red")
    ax.grid(alpha=0.3)
    gold = ax.twinx()
    gold.plot([r["rlhf/sqrt_kl"] for r in rl], [r["rlhf/gold"] for r in rl], color="tab:blue", alpha=0.4,
              marker=".", linestyle="none", label="gold: verifier pass rate of the same samples")
    gold.plot([0.0 if r["step"] == 0 else d[r["step"]] for r in ev], [r["pass@1"] for r in ev], color="tab:blue",
              marker="o", label="gold: held-out pass@1")
    gold.set_ylabel("fraction correct (verifier)", color="tab:blue")
    gold.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()[0] + gold.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], loc="lower left", fontsize=8)
    ax.set_title("RL against a learned reward: proxy vs gold")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def report(run_dir: Path, tracker) -> dict:
    """After RL against a reward model: over_optimisation.png in the run directory and in W&B, and the figures
    for summary.json."""
    png = plot_over_optimisation(run_dir / "metrics.jsonl", run_dir / "over_optimisation.png")
    import wandb

    tracker.run.log({"rlhf/proxy_vs_gold": wandb.Image(str(png))})
    return over_optimisation(run_dir / "metrics.jsonl")
