"""The learner in this process: the policy, its AdamW and LR schedule, and the steps of steps.py on them.

Every learner has this interface (ranks.py's group of ranks too): `start` (optimizer and schedule), `lm_step`,
`logprobs`, `policy_gradient_step`, `schedule_step` (the stage's loop calls it once per stage step: the schedule's
only stepper), `lr`, `full_model` (current weights, for the engines and checkpoints), `close`; and `optimizer`
and `schedule`, whose state_dict checkpoints hold.
"""

from __future__ import annotations

import torch
from transformers import get_cosine_schedule_with_warmup

from rlpractice.algorithm.settings import LossSettings
from rlpractice.learner.forward import Sequence
from rlpractice.learner.steps import lm_step, policy_gradient_step, sequence_logprobs


class LocalLearner:
    """The policy learning in this process, on `learner.device`."""

    def __init__(self, model, optimizer=None):
        """`optimizer`: one made elsewhere (else `start` makes AdamW)."""
        self.model = model
        self.optimizer, self.schedule = optimizer, None

    def start(self, lr: float, weight_decay: float, betas: tuple[float, float], warmup_steps: int = 0,
              total_steps: int = 0) -> None:
        """A fresh AdamW; with `total_steps`, its learning rate warms up linearly, then decays on a cosine."""
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas)
        self.schedule = get_cosine_schedule_with_warmup(self.optimizer, warmup_steps, total_steps) if total_steps \
            else None

    def lm_step(self, seqs: list[Sequence], **kw) -> float:
        return lm_step(self.model, self.optimizer, seqs, **kw)

    def logprobs(self, seqs: list[Sequence], **kw) -> list[torch.Tensor]:
        return sequence_logprobs(self.model, seqs, **kw)

    def policy_gradient_step(self, seqs: list[Sequence], loss: LossSettings, **kw) -> dict:
        return policy_gradient_step(self.model, self.optimizer, seqs, loss, **kw)

    def schedule_step(self) -> None:
        if self.schedule is not None:
            self.schedule.step()

    def lr(self) -> float:
        return self.schedule.get_last_lr()[0]

    def full_model(self):
        return self.model

    def close(self) -> None:
        pass
