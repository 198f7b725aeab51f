"""The code interpreter tool: the model's Python runs in the sandbox (sandbox.py), one fresh process per call.

The sandbox is set up once per process: `configure(mode=..., limits=...)` at startup, or the default
(mode "auto", SandboxLimits()) on first use. Either raises UserError when the sandbox cannot be set up here,
and ToolRunner calls `sandbox()` when it starts, so a run that asks for this tool refuses to start instead of
running code unsandboxed.
"""

from __future__ import annotations

import threading

from rlpractice.tools.sandbox import Sandbox, SandboxLimits

_sandbox: Sandbox | None = None
_lock = threading.Lock()


def configure(mode: str = "auto", limits: SandboxLimits | None = None) -> Sandbox:
    """Choose the sandbox for the `python` tool (probes it: UserError when it cannot isolate code here)."""
    global _sandbox
    with _lock:
        _sandbox = Sandbox(mode, limits or SandboxLimits())
        return _sandbox


def sandbox() -> Sandbox:
    global _sandbox
    with _lock:
        if _sandbox is None:
            _sandbox = Sandbox()
        return _sandbox


def python(code: str) -> str:
    """Run `code`; its stdout (and stderr), or ToolError with what it printed and its last error line."""
    return sandbox()(code)
