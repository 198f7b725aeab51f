"""Rollout records. A `Sample` is one completion as the engine produced it: the sampler actor builds it (token ids,
text, finish reason, the engine's log-probs, with tools their mask and what they did), the trainer receives it
as-is and grading adds its `grade`. A `Group` is one problem's samples; a `Batch` is one RL step's groups plus how
long they took. The learner reads token ids from here, never re-tokenised text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rlpractice.grading.registry import Grade
from rlpractice.textbook.problems import Problem

if TYPE_CHECKING:  # imported where it is used: the sampler actor imports this module before the engine sets threads
    import torch


@dataclass
class Sample:
    """One sampled completion, graded by the trainer."""

    ids: list[int]  # completion token ids, as the engine produced them (ending in EOS unless cut short)
    text: str
    finish: str  # "stop", "length" (max_new_tokens), or "turns" (an environment's episode cut at env.max_turns)
    sampler_logps: list[float] | None = None  # the engine's log-prob of each id (when asked for; 0.0: not sampled)
    # per id, 1 = an observation (a tool's or an environment's output: appended, not sampled); None: no episodes
    observation_mask: list[int] | None = None
    tool_calls: int = 0
    tool_errors: int = 0  # calls the tool answered with an error (not counting timeouts)
    tool_timeouts: int = 0
    tool_s: float = 0.0  # seconds its calls took (they overlap other samples' decoding)
    turns: int = 1  # model turns of its episode
    turn_rewards: list[float | None] | None = None  # an environment's reward for each turn; None: no environment
    # the verifier's (reward, reason and, with several verifiers, each one's reward) or, when an environment gives
    # the reward, the environment's (set by the sampler actor)
    grade: Grade | None = None

    @property
    def reward(self) -> float:
        return self.grade.reward

    @property
    def reason(self) -> str:
        return self.grade.reason

    @property
    def parts(self) -> dict[str, float] | None:
        return self.grade.parts

    @property
    def observation_tokens(self) -> int:
        return sum(self.observation_mask or [])


@dataclass
class Group:
    """A practice problem and the samples drawn for it (all continuing the same prompt ids). From a sampler actor,
    a group has no problem yet: the trainer knows which one it asked for."""

    problem: Problem | None
    prompt_ids: list[int]
    samples: list[Sample] = field(default_factory=list)

    @property
    def rewards(self) -> list[float]:
        return [s.reward for s in self.samples]


@dataclass
class Batch:
    """One RL step's graded groups, and what drawing them cost."""

    groups: list[Group]
    sample_s: float = 0.0  # generation (on the sampling thread when sampling ahead)
    grade_s: float = 0.0
    filtered: float = 0.0  # share of sampled groups dynamic sampling dropped
    order_state: dict = field(default_factory=dict)  # the data position right after drawing (for checkpoints)
    curriculum: dict = field(default_factory=dict)  # the curriculum's view, for metrics

    @property
    def problems(self) -> list[Problem]:
        return [g.problem for g in self.groups]

    @property
    def samples(self) -> list[Sample]:
        return [s for g in self.groups for s in g.samples]

    def rewards(self) -> torch.Tensor:
        """The verifier's rewards, [num_groups, group_size] (every group has the same size)."""
        import torch

        return torch.tensor([g.rewards for g in self.groups], dtype=torch.float32)


def tool_metrics(samples: list[Sample]) -> dict:
    """How the samples used their tools: calls per completion, errors and timeouts per call, seconds the
    calls took in all, and the share of correct answers that used a tool; nothing for samples without tools."""
    if all(s.observation_mask is None or s.turn_rewards is not None for s in samples):  # no tools
        return {}
    calls = sum(s.tool_calls for s in samples)
    correct = [s for s in samples if s.reward >= 1.0]
    return {"tools/calls_per_completion": calls / max(len(samples), 1),
            "tools/error_rate": sum(s.tool_errors for s in samples) / max(calls, 1),
            "tools/timeout_rate": sum(s.tool_timeouts for s in samples) / max(calls, 1),
            "tools/seconds": sum(s.tool_s for s in samples),
            "tools/correct_with_tool": sum(s.tool_calls > 0 for s in correct) / max(len(correct), 1)}
