"""Notice a run that cannot learn: GRPO learns only from groups whose samples got different rewards.

If for several steps in a row no sample earned any reward, or every group's rewards were all equal, the
policy gradient is zero and the run trains nothing. Say so early, with what the completions look like (the
verifier's most common reason) and what usually fixes it; optionally stop.
"""

from __future__ import annotations

from collections import Counter

import torch

from rlpractice.errors import UserError
from rlpractice.rollout.batch import Batch

FIXES = ("worked solutions for SFT (so the model learns the answer format), a pretrained model (model=hf), or a "
         "verifier that gives partial credit for the format")


class LearningSignal:
    """`warn_after`: consecutive steps without signal before the warning (0: never warn); `stop_after`: before
    the run stops with that message (0: never stop)."""

    def __init__(self, warn_after: int = 3, stop_after: int = 0):
        self.warn_after, self.stop_after = warn_after, stop_after
        self.steps_without = 0
        self.warned = False

    def observe(self, step: int, batch: Batch, rewards: torch.Tensor, rollouts: str) -> dict:
        """Record step `step`'s batch and the rewards the update learns from; warn (once per stretch) or stop when it
        is due. Returns the metrics."""
        no_reward = bool((rewards == 0).all())
        no_variance = bool((rewards.max(dim=1).values == rewards.min(dim=1).values).all())
        self.steps_without = self.steps_without + 1 if (no_reward or no_variance) else 0
        if not self.steps_without:
            self.warned = False
        message = None
        if self.warn_after and self.steps_without >= self.warn_after and not self.warned:
            message = diagnosis(batch, self.steps_without, no_reward, rollouts)
            print(f"[rl] warning: {message}", flush=True)
            self.warned = True
        if self.stop_after and self.steps_without >= self.stop_after:
            raise UserError(f"{message or diagnosis(batch, self.steps_without, no_reward, rollouts)} Stopped after "
                            f"rl.stop_without_signal={self.stop_after} such steps.")
        return {"steps_without_signal": self.steps_without}


def diagnosis(batch: Batch, steps: int, no_reward: bool, rollouts: str) -> str:
    what = "no sample earned any reward" if no_reward else "every group's samples got the same reward"
    reason, count = Counter(s.reason for s in batch.samples).most_common(1)[0]
    share = count / len(batch.samples)
    return (f"nothing to learn for {steps} steps: {what}, so every advantage is 0. The verifier's most common "
            f"reason ({share:.0%} of the last step's samples): {reason!r}; see {rollouts}. What usually fixes it: "
            f"{FIXES}.")
