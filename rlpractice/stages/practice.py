"""Which practice problems each RL step works on: the data position, and an optional curriculum.

Uniform (default): the practice set in a reshuffled order each pass, every problem once per pass.
Curriculum: every problem's pass rate is tracked across steps, and problems are drawn with weight
p(1 - p) (p: the Beta(1, 1)-smoothed pass rate; unseen problems count as p = 0.5), so problems the
model always or never solves, which give GRPO no signal, come up less often.

`state()` is what a checkpoint keeps, so a resumed run draws exactly what it would have drawn. `draw_batch` draws
a step's problems from the order, samples and grades a group for each.
"""

from __future__ import annotations

import random
import time

from omegaconf import DictConfig

from rlpractice.environments.settings import EpisodeSettings
from rlpractice.grading.pool import GradingPool
from rlpractice.rollout.batch import Batch
from rlpractice.rollout.samplers import Samplers, sample_groups
from rlpractice.textbook.problems import Problem

FLOOR = 0.01  # the smallest draw weight: solved and hopeless problems still come back now and then


class PracticeOrder:
    def __init__(self, problems: list[Problem], seed: int, curriculum: bool = False):
        self.problems, self.rng, self.curriculum = problems, random.Random(seed), curriculum
        self.queue: list[int] = []
        self.stats: dict[str, list[int]] = {}  # question -> [samples graded, samples correct]

    def pass_estimate(self, problem: Problem) -> float:
        n, c = self.stats.get(problem.question, (0, 0))
        return (c + 1) / (n + 2)

    def weight(self, problem: Problem) -> float:
        p = self.pass_estimate(problem)
        return max(p * (1 - p), FLOOR)

    def take(self, k: int) -> list[Problem]:
        if self.curriculum:
            return self._weighted(k)
        out = []
        while len(out) < k:
            if not self.queue:
                self.queue = list(range(len(self.problems)))
                self.rng.shuffle(self.queue)
            out.append(self.problems[self.queue.pop()])
        return out

    def _weighted(self, k: int) -> list[Problem]:
        """k distinct problems, drawn without replacement in proportion to their weights
        (Efraimidis-Spirakis: the k largest keys u ** (1 / w))."""
        keys = [(self.rng.random() ** (1.0 / self.weight(p)), i) for i, p in enumerate(self.problems)]
        return [self.problems[i] for _, i in sorted(keys, reverse=True)[: min(k, len(self.problems))]]

    def record(self, problem: Problem, rewards: list[float]) -> None:
        n, c = self.stats.get(problem.question, (0, 0))
        self.stats[problem.question] = [n + len(rewards), c + sum(r >= 1.0 for r in rewards)]

    def state(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        stats = {q: list(v) for q, v in self.stats.items()}  # a copy: sampling ahead keeps updating the live one
        return {"queue": list(self.queue), "rng": [version, list(internal), gauss], "stats": stats}

    def restore(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.queue = list(state["queue"])
        self.stats = {q: list(v) for q, v in state.get("stats", {}).items()}


def draw_batch(samplers: Samplers, pool: GradingPool, order: PracticeOrder, cfg: DictConfig, logprobs: bool,
               episodes: EpisodeSettings | None = None) -> Batch:
    """rl.prompts_per_step problems from `order`, each with a graded group of rl.samples_per_prompt samples (with
    `logprobs`, the engines' log-probs; as `episodes` with the run's tools or environment). With
    algo.dynamic_sampling (DAPO), groups with no reward variance are dropped and more problems drawn to refill the
    batch, for at most algo.max_sampling_rounds rounds; if none at all was informative, the last round is kept (zero
    advantages)."""
    prompts, n, dynamic_sampling = cfg.rl.prompts_per_step, cfg.rl.samples_per_prompt, cfg.algo.dynamic_sampling
    start, groups, grade_s, seen = time.time(), [], 0.0, 0
    for _ in range(cfg.algo.max_sampling_rounds if dynamic_sampling else 1):
        drawn, secs = sample_groups(samplers, pool, order.take(prompts - len(groups)), n, logprobs, episodes)
        grade_s += secs
        seen += len(drawn)
        for g in drawn:
            order.record(g.problem, g.rewards)
        # a group whose samples all got the same reward has zero advantage everywhere: it teaches nothing
        groups += [g for g in drawn if not dynamic_sampling or max(g.rewards) != min(g.rewards)]
        if len(groups) == prompts:
            break
    filtered = 1.0 - len(groups) / seen if seen else 0.0
    return Batch(groups or drawn, sample_s=time.time() - start - grade_s, grade_s=grade_s, filtered=filtered,
                 order_state=order.state())
