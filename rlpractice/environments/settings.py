"""What a sampler actor needs to run episodes, as one value, and the environments it makes from it.

A run practises with its tools (`tools=`) or with an environment (`env=`): the trainer sends `EpisodeSettings`
with every sampling call, and each engine makes its `EnvironmentMaker` once (the tools' runner, the grading pool
check and retry uses, the worker processes of your own environment class) and a fresh environment per episode.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import OmegaConf

from rlpractice.config_schema import EnvConfig, ToolsConfig
from rlpractice.environments.base import Environment
from rlpractice.environments.tool_env import ToolEnvironment, make_runner, tool_settings
from rlpractice.errors import UserError


@dataclass(frozen=True)
class EpisodeSettings:
    tools: ToolsConfig | None = None
    env: EnvConfig | None = None
    verifier: dict | None = None  # the run's `verifier` settings, for an environment that grades with it

    @property
    def max_turns(self) -> int:
        return self.tools.max_calls + 1 if self.tools else self.env.max_turns

    @property
    def discount(self) -> float:
        return self.env.discount if self.env else 1.0

    @property
    def step_timeout_s(self) -> float:
        return self.env.step_timeout_s if self.env else 10.0


def episode_settings(cfg) -> EpisodeSettings | None:
    """The run's episodes: its environment (`env.name`), else its tools, else None (one completion per sample)."""
    env = cfg.get("env")
    if env is not None and env.name:
        if tool_settings(cfg) is not None:
            raise UserError(f"env.name={env.name} and tools.names={list(cfg.tools.names)}: choose one; an environment "
                            "and tools in the same episodes are not supported")
        return EpisodeSettings(env=OmegaConf.to_object(env),
                               verifier=OmegaConf.to_container(cfg.verifier, resolve=True))
    settings = tool_settings(cfg)
    return EpisodeSettings(tools=settings) if settings is not None else None


class EnvironmentMaker:
    """Makes one environment per episode for `settings`; what they share is made once, here."""

    def __init__(self, settings: EpisodeSettings):
        self.closers: list[Callable[[], None]] = []
        self.make = self._maker(settings)

    def __call__(self) -> Environment:
        return self.make()

    def _maker(self, s: EpisodeSettings) -> Callable[[], Environment]:
        if s.tools is not None:
            runner = make_runner(s.tools)
            self.closers.append(runner.close)
            return lambda: ToolEnvironment(runner)
        if s.env.name == "retry":
            from rlpractice.environments.retry import CheckAndRetry
            from rlpractice.grading.pool import GradingPool

            pool = GradingPool.from_config(OmegaConf.create(s.verifier))
            self.closers.append(pool.close)
            lock = threading.Lock()  # one pool per engine, its workers shared by the episodes' step threads

            def grade(text: str, answer: str, columns: dict):
                with lock:
                    return pool.grade([text], [answer], [columns])[0]

            return lambda: CheckAndRetry(grade, s.env.max_attempts, s.env.repeat_penalty)
        from rlpractice.environments.isolated import environment_factory

        factory = environment_factory(s.env.name, s.env.plugins, s.env.step_timeout_s)
        self.closers.append(factory.close)
        return factory

    def close(self) -> None:
        for close in self.closers:
            close()
