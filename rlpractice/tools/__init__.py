"""Tools the model calls while it writes: a calculator and a sandboxed Python interpreter, plus your own.

syntax.py    how calls look in text, the sampler's stop strings, reading a call, writing its result
registry.py  tools by name; `@tool("name")` adds one
calculator.py, python_tool.py (with sandbox.py, sandbox_boot.py)   the built-in tools
runner.py    ToolRunner: runs calls concurrently with time limits, for the rollout loop
"""

from rlpractice.tools.registry import Tool, get_tool, tool
from rlpractice.tools.runner import ToolResult, ToolRunner
from rlpractice.tools.syntax import CALCULATOR, PYTHON, Call, Syntax, ToolError, format_result, parse_call, stop_strings

__all__ = ["CALCULATOR", "PYTHON", "Call", "Syntax", "Tool", "ToolError", "ToolResult", "ToolRunner", "format_result",
           "get_tool", "parse_call", "stop_strings", "tool"]
