"""How tool calls look in model text: where the sampler stops, how a call is read, how its result is written.

A call is `open ARGUMENT close`; `close` is the stop string the sampler stops at, and the tool's result is
appended right after it as `result_prefix RESULT result_suffix`. Built-in syntaxes:

    calculator   26 - 16 = <<26-16>> 10.           model writes '<<26-16>>', the tool appends ' 10'
    python       ```python                         model writes the block and the '```output' fence,
                 print(26 - 16)                    the tool appends '\\n10\\n```\\n'
                 ```
                 ```output
                 10
                 ```
    user tools   <name>ARGUMENT</name><output>RESULT</output>

The calculator keeps GSM8K's '<<...>>' but without the '=result' inside: a call ends where the model
stops writing, so the result can only come after '>>'. GSM8K's '<<16-3=13>>13' becomes '<<16-3>> 13'
(`from_gsm8k`). The code syntax is ToRL's: the model itself asks for the output by writing '```output'.

Token-in/token-out: the rollout never re-encodes the history. It appends the engine's own token ids, then the
result text encoded on its own. Two consequences:
- A stop string may end inside a token (a vocabulary with a '>>.' token stops on '>>.'); the extra text is
  `Call.spill` and stays in the history; the result goes after it. Read calls from the decoded token ids,
  not from the engine's output text, which is cut right after the stop string.
- Results start with a space or a newline, so they never glue onto the stop string's punctuation in
  byte-level BPE pre-tokenisers ('>>' then '-3' could otherwise be trained as one token '>>-').
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass


class ToolError(Exception):
    """A tool's answer that is an error (the message is what the model sees).

    `output` is what the tool printed before failing; `timeout` marks limits of time (counted apart)."""

    def __init__(self, message: str, output: str = "", timeout: bool = False):
        super().__init__(message)
        self.output, self.timeout = output, timeout


MAX_SPILL = 16  # characters after a stop string that can still be the rest of its last token
MAX_RESULT_CHARS = 512  # what the model sees of a result (TRL's PR #2810 suggests about 500)
MAX_ERROR_CHARS = 160


@dataclass(frozen=True)
class Syntax:
    open: str
    close: str  # the stop string
    result_prefix: str
    result_suffix: str
    one_line: bool = False  # the argument holds no newline (a calculator expression)
    fence: str = ""  # a closing fence the argument may end with, dropped ('```' before '```output')


CALCULATOR = Syntax("<<", ">>", " ", "", one_line=True)
PYTHON = Syntax("```python", "```output", "\n", "\n```\n", fence="```")


def tag_syntax(name: str) -> Syntax:
    """The syntax of a user's tool named `name`: '<name>ARGUMENT</name>' answered by '<output>...</output>'."""
    return Syntax(f"<{name}>", f"</{name}>", "<output>", "</output>")


@dataclass(frozen=True)
class Call:
    tool: str
    argument: str | None  # None when the call is malformed (then `error` says why)
    spill: str = ""  # text of the last token beyond the stop string (see the module docstring)
    error: str | None = None


def stop_strings(syntaxes: Mapping[str, Syntax]) -> list[str]:
    """The strings the sampler must stop at (vLLM: SamplingParams(stop=..., include_stop_str_in_output=True))."""
    return sorted({s.close for s in syntaxes.values()})


def parse_call(text: str, syntaxes: Mapping[str, Syntax]) -> Call | None:
    """The call that `text` (a completion so far, decoded from its token ids) ends with, or None.

    None means the stop string was not a call (e.g. '>>' as a shift in code, or no stop string at the end):
    the rollout continues generating without appending anything."""
    best = None  # (where the stop string starts, tool name)
    for name, syntax in syntaxes.items():
        at = text.rfind(syntax.close, max(0, len(text) - len(syntax.close) - MAX_SPILL))
        if at >= 0 and (best is None or at > best[0]):
            best = (at, name)
    if best is None:
        return None
    at, name = best
    syntax = syntaxes[name]
    spill = text[at + len(syntax.close) :]
    start = text.rfind(syntax.open, 0, at)
    if syntax.one_line:
        if start < 0 or "\n" in text[start:at]:
            return None  # no opener on this line: not a call
        return Call(name, text[start + len(syntax.open) : at].strip(), spill)
    if start < 0 or syntax.close in text[start:at]:  # no opener since the previous call
        return Call(name, None, spill, f"no {syntax.open!r} before {syntax.close!r}")
    argument = text[start + len(syntax.open) : at].rstrip()
    if syntax.fence and argument.endswith(syntax.fence):
        argument = argument[: -len(syntax.fence)].rstrip()
    return Call(name, argument.lstrip("\n").rstrip() if syntax.fence else argument.strip(), spill)


def truncate_middle(text: str, max_chars: int) -> str:
    """Keep the start and the end (where a traceback's cause and a program's last prints are)."""
    if len(text) <= max_chars:
        return text
    marker = f"\n...[{len(text) - max_chars} characters cut]...\n"
    keep = max(0, max_chars - len(marker))
    return text[: keep - keep // 2] + marker + text[len(text) - keep // 2 :]


def one_line(message: str, max_chars: int = MAX_ERROR_CHARS) -> str:
    """An error as one short line: the last non-empty line (a traceback's 'ValueError: ...'), capped."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else "failed"
    return line if len(line) <= max_chars else line[: max_chars - 3] + "..."


def format_result(syntax: Syntax, output: str, error: str | None = None, max_chars: int = MAX_RESULT_CHARS) -> str:
    """The text appended after a call: the output (cut in the middle when long), then 'error: ...' if any."""
    body = truncate_middle(output.rstrip("\n"), max_chars) if output.strip() else ""
    if error is not None:
        body = (body + "\n" if body else "") + "error: " + one_line(error)
    return syntax.result_prefix + body + syntax.result_suffix


_GSM8K_CALL = re.compile(r"<<([^<>=]*)=([^<>]*)>>(\s?)")


def from_gsm8k(text: str, tool_output: Callable[[str], str | None] | None = None) -> str:
    """GSM8K's annotations in this syntax: '= <<16-3=13>>13 eggs' -> '= <<16-3>> 13 eggs'.

    The model's later text (the '13' after the annotation) is where GSM8K repeats the result; it becomes
    the calculator's output, so a solution reads the same with the tool's result in place. With `tool_output`
    (an expression's result as the calculator writes it, None when it fails), an annotation whose result the
    calculator would write otherwise ('<<10/3=3.33>>': '10/3') is dropped instead: SFT must not teach the
    model to expect ids the tool never gives."""

    def call(m: re.Match) -> str:
        expr, result = m.group(1).strip(), m.group(2).strip()
        if tool_output is not None and tool_output(expr) != result:
            return m.group(3)  # GSM8K's own text stays, without the annotation
        rest = m.string[m.end() :]
        if rest.startswith(result):  # '<<16-3=13>>13' -> '<<16-3>> 13': the repeat is the result
            return f"<<{expr}>> "
        return f"<<{expr}>> {result}{m.group(3)}"

    return _GSM8K_CALL.sub(call, text)
