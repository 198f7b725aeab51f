"""A gym-style environment class (the gymnasium convention) as an rlpractice environment: `env.name=gym:file.py:Cls`.

    class Check:
        def reset(self, *, seed=None, options=None):     # options: the problem (prompt, question, answer, columns)
            self.answer = options["answer"]
            return "", {}                                 # "": the problem's prompt is the first observation
        def step(self, action: str):                      # action: the model's turn
            reward = float(action.split("Answer:")[-1].strip() == self.answer)
            return "", reward, True, False, {}            # observation, reward, terminated, truncated, info

The observation after a step is text appended to the episode ("" or None: nothing); terminated or truncated ends
it. A class attribute `stop_strings` ends model turns there too (a tool call's end), as for rlpractice's own
environments (base.py).
"""

from __future__ import annotations

import numbers
import reprlib

from rlpractice.environments.base import Step
from rlpractice.textbook.problems import Problem


class GymAdapter:
    """One gym-style instance seen through the `Environment` protocol; malformed returns are ValueErrors."""

    gives_reward = True

    def __init__(self, env):
        self.env = env
        self.stop_strings = tuple(getattr(env, "stop_strings", ()))

    def reset(self, problem: Problem) -> str | None:
        result = self.env.reset(options={"prompt": problem.prompt, "question": problem.question,
                                         "answer": problem.answer, **problem.columns})
        if not isinstance(result, tuple | list) or len(result) != 2:
            raise ValueError(f"reset() returned {_show(result)}; a gym-style reset returns (observation, info)")
        observation = result[0]
        return observation if isinstance(observation, str) and observation else None

    def step(self, turn: str) -> Step:
        result = self.env.step(turn)
        if not isinstance(result, tuple | list) or len(result) != 5:
            raise ValueError(f"step() returned {_show(result)}; a gym-style step returns (observation, reward, "
                             "terminated, truncated, info)")
        observation, reward, terminated, truncated, info = result
        observation = "" if observation is None else observation
        if not isinstance(observation, str):
            raise ValueError(f"step() returned an observation of type {type(observation).__name__}, not str")
        if not isinstance(reward, numbers.Real):  # numpy's scalars are Real too
            raise ValueError(f"step() returned a reward of type {type(reward).__name__}, not a number")
        info = {} if info is None else info
        if not isinstance(info, dict):
            raise ValueError(f"step() returned info of type {type(info).__name__}, not a dict")
        return Step(observation, float(reward), bool(terminated) or bool(truncated), info)


def _show(value) -> str:
    return f"a {type(value).__name__} {reprlib.repr(value)}"
