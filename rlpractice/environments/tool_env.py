"""Tools as an environment: a turn that ends at a call gets the tool's result as its observation.

The model writes up to a call's stop string ('<<26-16>>'), the tool runs, its result (' 10') is the observation,
and the model goes on writing. A turn that ends at end-of-text ends the episode; the run's verifier grades its
text (`gives_reward = False`). A stop string that ends no call ('>>' in code) gets no observation: keep writing.
"""

from __future__ import annotations

from rlpractice.config_schema import ToolsConfig
from rlpractice.environments.base import Step
from rlpractice.plugins import import_plugin
from rlpractice.textbook.problems import Problem
from rlpractice.tools.runner import ToolRunner


def tool_settings(cfg) -> ToolsConfig | None:
    """The run's `tools` config as its typed value (what sampler actors receive), or None when it names no tool."""
    from omegaconf import OmegaConf

    tools = cfg.get("tools")
    return OmegaConf.to_object(tools) if tools is not None and tools.names else None


def make_runner(settings: ToolsConfig) -> ToolRunner:
    """The tools `settings` names, after importing its plugins and setting up the python tool's sandbox (UserError
    when it cannot isolate code here)."""
    for ref in settings.plugins:
        import_plugin(ref, "tools.plugins")
    if "python" in settings.names:
        from rlpractice.tools import python_tool

        python_tool.configure(settings.sandbox)
    return ToolRunner(settings.names, max_result_chars=settings.max_result_chars)


class ToolEnvironment:
    """One episode with the run's tools (`runner`: shared by every episode of an engine)."""

    gives_reward = False
    step_timeout_s = None  # each tool has its own time limit (runner.py), the python sandbox its own wall time

    def __init__(self, runner: ToolRunner):
        self.runner = runner
        self.stop_strings = runner.stop_strings
        # quick tools of bounded cost answer in the engine's thread (handing them to a thread costs more)
        self.inline = all(t.inline for t in runner.tools.values())

    def reset(self, problem: Problem) -> None:
        return None

    def step(self, turn: str) -> Step:
        call = self.runner.parse(turn)
        if call is None:  # end-of-text, or a stop string that ends no call
            return Step()
        result = self.runner.submit(call).result()
        return Step(result.text, info={"tool_calls": 1, "tool_errors": int(result.error is not None
                                                                          and not result.timed_out),
                                       "tool_timeouts": int(result.timed_out), "tool_s": result.seconds})
