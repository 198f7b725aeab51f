"""Tools by name: a tool is a function `(argument: str) -> str` plus the syntax that calls it.

Add your own in a few lines (a file the trainer imports, like a verifier plugin):

    from rlpractice.tools import ToolError, tool

    @tool("reverse")                       # called in model text as <reverse>abc</reverse>
    def reverse(text: str) -> str:
        if not text:
            raise ToolError("nothing to reverse")   # shown to the model as 'error: nothing to reverse'
        return text[::-1]

The function runs in a worker thread of the trainer's process: fine for pure functions (the calculator);
code from the model goes through the sandbox instead (python_tool.py). A raised ToolError becomes one short
'error: ...' line for the model; any other exception too, prefixed with its type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rlpractice.errors import UserError
from rlpractice.tools.calculator import calculator
from rlpractice.tools.python_tool import python, sandbox
from rlpractice.tools.syntax import CALCULATOR, PYTHON, Syntax, tag_syntax

DEFAULT_TIMEOUT = 10.0  # seconds a tool may take before its call counts as timed out


@dataclass(frozen=True)
class Tool:
    name: str
    fn: Callable[[str], str]
    syntax: Syntax
    timeout: float | None = DEFAULT_TIMEOUT  # None: the tool enforces its own limit (the sandbox does)
    prepare: Callable[[], object] | None = None  # run once before the first call; raises UserError to refuse
    # Runs in the rollout's own thread, without a time limit: for quick functions of bounded cost (the calculator),
    # where handing the call to a worker thread costs more than the call (scripts/bench_tools.py)
    inline: bool = False


_REGISTRY: dict[str, Tool] = {  # the built-in tools
    "calculator": Tool("calculator", calculator, CALCULATOR, inline=True),  # bounded by the parser's caps
    "python": Tool("python", python, PYTHON, timeout=None, prepare=sandbox),  # the sandbox enforces its own wall time
}


def tool(name: str, syntax: Syntax | None = None, timeout: float | None = DEFAULT_TIMEOUT,
         prepare: Callable[[], object] | None = None, inline: bool = False) -> Callable:
    """Decorator: register `fn` as the tool `name` (syntax: `tag_syntax(name)` unless given)."""

    def register(fn: Callable[[str], str]) -> Callable[[str], str]:
        _REGISTRY[name] = Tool(name, fn, syntax or tag_syntax(name), timeout, prepare, inline)
        return fn

    return register


def get_tool(name: str) -> Tool:
    if name not in _REGISTRY:
        raise UserError(f"unknown tool {name!r}; registered: {sorted(_REGISTRY)}. Register one with @tool({name!r}).")
    return _REGISTRY[name]
