"""Rollout records and how a step's batch is drawn: sample a group per problem, grade every sample.

A `Group` is one problem's samples; a `Batch` is one RL step's groups plus how long they took. The
learner reads token ids from here, never re-tokenised text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from rlpractice.algorithm.dynamic_sampling import filtered_fraction, informative
from rlpractice.grading.pool import GradingPool
from rlpractice.rollout.samplers import Samplers
from rlpractice.stages.practice import PracticeOrder
from rlpractice.textbook.problems import Problem


@dataclass
class Sample:
    """One sampled solution, graded."""

    ids: list[int]  # completion token ids, as the engine produced them (ending in EOS unless cut short)
    text: str
    reward: float
    reason: str  # the verifier's short explanation
    finish: str  # "stop" or "length"
    sampler_logps: list[float] | None = None  # the engine's log-prob of each sampled token (when asked for)
    parts: dict[str, float] | None = None  # each verifier's reward, when several are combined
    tool_mask: list[int] | None = None  # per id, 1 = a tool's output (appended, not sampled); None: no tools
    tool_calls: int = 0
    tool_errors: int = 0  # calls the tool answered with an error (not counting timeouts)
    tool_timeouts: int = 0
    tool_s: float = 0.0  # seconds its calls took (they overlap other samples' decoding)
    rm_score: float | None = None  # the reward model's score (reward.model), set by the trainer after grading
    trained_reward: float | None = None  # what the update learns from when it is not `reward` (reward.model set)


@dataclass
class Group:
    """A practice problem and the samples drawn for it (all continuing the same prompt ids)."""

    problem: Problem
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

    def rewards(self, trained: bool = False) -> torch.Tensor:
        """[num_groups, group_size] (every group has the same size): the verifier's rewards, or with `trained`
        what the update learns from (they differ only when a reward model scores the samples: rlhf.py)."""
        pick = lambda s: s.trained_reward if trained and s.trained_reward is not None else s.reward  # noqa: E731
        return torch.tensor([[pick(s) for s in g.samples] for g in self.groups], dtype=torch.float32)


def sample_groups(samplers: Samplers, pool: GradingPool, problems: list[Problem], n: int,
                  logprobs: bool = True, tools: dict | None = None) -> tuple[list[Group], float]:
    """n graded samples per problem, and the seconds spent grading. Chunks are graded as they stream in,
    so grading overlaps generation; with `logprobs` each sample keeps the engine's log-probs; with `tools`
    (the `tools` config as a dict) the samples call tools as they write."""
    groups = [Group(p, []) for p in problems]
    grade_s = 0.0
    for i, chunk in samplers.sample([p.prompt for p in problems], n, logprobs=logprobs, tools=tools):
        t = time.time()
        comps = chunk["completions"]
        grades = pool.grade([c[1] for c in comps], [problems[i].answer] * len(comps),
                            [problems[i].columns] * len(comps))
        grade_s += time.time() - t
        groups[i].prompt_ids = chunk["prompt_ids"]
        groups[i].samples.extend(Sample(c[0], c[1], g.reward, g.reason, c[2], c[3], g.parts, **tool_fields(c))
                                 for c, g in zip(comps, grades, strict=True))
    return groups, grade_s


def tool_fields(completion: tuple) -> dict:
    """A completion's tool record (the fifth field of a tool rollout's completion) as Sample fields."""
    if len(completion) < 5:
        return {}
    t = completion[4]
    return {"tool_mask": t["tool_mask"], "tool_calls": t["calls"], "tool_errors": t["errors"],
            "tool_timeouts": t["timeouts"], "tool_s": t["tool_s"]}


def draw_batch(samplers: Samplers, pool: GradingPool, order: PracticeOrder, prompts: int, n: int,
               dynamic_sampling: bool = False, max_rounds: int = 1, logprobs: bool = True,
               tools: dict | None = None) -> Batch:
    """`prompts` problems from `order`, each with a graded group of n samples. With `dynamic_sampling` (DAPO),
    groups with no reward variance are dropped and more problems drawn to refill the batch, for at most
    `max_rounds` rounds; if none at all was informative, the last round is kept (zero advantages)."""
    start, groups, grade_s, seen = time.time(), [], 0.0, 0
    for _ in range(max_rounds if dynamic_sampling else 1):
        drawn, secs = sample_groups(samplers, pool, order.take(prompts - len(groups)), n, logprobs, tools)
        grade_s += secs
        seen += len(drawn)
        for g in drawn:
            order.record(g.problem, g.rewards)
        groups += [g for g in drawn if not dynamic_sampling or informative(g.rewards)]
        if len(groups) == prompts:
            break
    filtered = filtered_fraction(len(groups), seen)
    return Batch(groups or drawn, sample_s=time.time() - start - grade_s, grade_s=grade_s, filtered=filtered,
                 order_state=order.state())


def tool_metrics(samples: list[Sample]) -> dict:
    """How the samples used their tools: calls per completion, errors and timeouts per call, seconds the
    calls took in all, and the share of correct answers that used a tool."""
    calls = sum(s.tool_calls for s in samples)
    correct = [s for s in samples if s.reward >= 1.0]
    return {"tools/calls_per_completion": calls / max(len(samples), 1),
            "tools/error_rate": sum(s.tool_errors for s in samples) / max(calls, 1),
            "tools/timeout_rate": sum(s.tool_timeouts for s in samples) / max(calls, 1),
            "tools/seconds": sum(s.tool_s for s in samples),
            "tools/correct_with_tool": sum(s.tool_calls > 0 for s in correct) / max(len(correct), 1)}
