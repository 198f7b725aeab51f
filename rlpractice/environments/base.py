"""The environment interface: practice as a conversation, text in and text out.

An episode starts from a problem. `reset(problem)` gives the first observation (the prompt the model continues;
None: the problem's own prompt). Then the model writes a turn, which ends at end-of-text or at one of the
environment's `stop_strings` (a tool call's end), and `step(turn)` answers with a `Step`: an observation to append
(tokens the model reads but is not trained on), this turn's reward, and whether the episode is over. The engine
continues the same token sequence after the observation, so an episode is one completion: the engine's ids with
each observation's ids spliced in (rlpractice/environments/loop.py).

    class Guess:                                     # a number-guessing game, three tries
        stop_strings = ()
        gives_reward = True

        def reset(self, problem):
            self.target, self.tries = int(problem.answer), 0
            return None                              # the problem's prompt as it is

        def step(self, turn):
            self.tries += 1
            guess = int(turn.split()[-1])
            if guess == self.target:
                return Step(reward=1.0, done=True)
            hint = "higher" if guess < self.target else "lower"
            return Step(f"\\nNo, {hint}.\\nGuess:", done=self.tries == 3)

After a turn that ended at end-of-text, an observation of "" ends the episode (the model has finished and nothing
answers back); after a stop string, it means "keep writing". The episode's reward is its turns' rewards summed,
each discounted by `discount ** turn` (`episode_reward`). An environment that gives no reward (`gives_reward =
False`: the tool loop) leaves the episode's text to the run's verifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from rlpractice.textbook.problems import Problem


@dataclass
class Step:
    """What the environment answers to one model turn."""

    observation: str = ""  # appended after the turn (encoded once, no loss); "" after a stop string: keep writing
    reward: float | None = None  # this turn's reward; None: none for this turn
    done: bool = False
    info: dict = field(default_factory=dict)  # "reason": why (rollouts.jsonl); numbers are summed per episode


@runtime_checkable
class Environment(Protocol):
    """One episode's environment; a new one per episode (`make_env()` in the loop)."""

    stop_strings: Sequence[str]  # where a model turn ends besides end-of-text; () for end-of-text only
    gives_reward: bool  # False: the run's verifier grades the episode's text (tools)

    def reset(self, problem: Problem) -> str | None: ...

    def step(self, turn: str) -> Step: ...


def episode_reward(turn_rewards: Sequence[float | None], discount: float = 1.0) -> float:
    """The turns' rewards as one episode reward: sum over turns t (from 0) of discount**t * r_t; a turn without a
    reward counts 0. discount=1: the plain sum. With [0, 1] and discount 0.5: 0.5 (right at the second attempt)."""
    return sum(discount ** t * r for t, r in enumerate(turn_rewards) if r is not None)


def check_step(result: object) -> Step:
    """`result` as a Step; ValueError naming what is wrong when an environment returned something else."""
    if not isinstance(result, Step):
        raise ValueError(f"step() returned a {type(result).__name__}, not a Step")
    if not isinstance(result.observation, str):
        raise ValueError(f"step() returned an observation of type {type(result.observation).__name__}, not str")
    if result.reward is not None and (isinstance(result.reward, bool) or not isinstance(result.reward, int | float)):
        raise ValueError(f"step() returned a reward of type {type(result.reward).__name__}, not a number")
    if not isinstance(result.info, dict):
        raise ValueError(f"step() returned info of type {type(result.info).__name__}, not a dict")
    return result
