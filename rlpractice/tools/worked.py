"""Worked solutions that show tool calls, cut the way a rollout builds them, for SFT.

A rollout's completion is sampled text up to each call's stop string, then the tool's result encoded on its
own, then more sampled text. SFT must see the same ids: `segments` cuts a solution at each call's end into
(text, is_tool_output) pieces, checking that the text after each call is exactly what the tool answers (a
textbook whose results differ from the tool's would teach the model to expect other ids). `solution_ids`
encodes the pieces one by one, each tool result with `encode_result` as the rollout does, and masks the results
(mask 0: no loss, as in RL).
"""

from __future__ import annotations

from rlpractice.environments.loop import encode_result
from rlpractice.errors import UserError
from rlpractice.tools.runner import ToolRunner


def segments(text: str, runner: ToolRunner) -> list[tuple[str, bool]]:
    """`text` as (piece, is_tool_output) pieces; UserError when a call's result in `text` is not the tool's."""
    out, start, at = [], 0, 0
    while True:
        ends = [(i + len(s)) for s in runner.stop_strings if (i := text.find(s, at)) >= 0]
        if not ends:
            break
        end = min(ends)
        call = runner.parse(text[:end])
        at = end
        if call is None:
            continue
        expected = runner.run([call])[0].text
        if not text.startswith(expected, end):
            raise UserError(f"a worked solution's call {text[start:end]!r} is followed by {text[end:end + 20]!r}, "
                            f"not by the tool's result {expected!r}: SFT would teach the model to expect other ids")
        out += [(text[start:end], False), (expected, True)]
        start = at = end + len(expected)
    if start < len(text):
        out.append((text[start:], False))
    return [(piece, tool) for piece, tool in out if piece]


def solution_ids(text: str, tokenizer, runner: ToolRunner) -> tuple[list[int], list[int]]:
    """(ids, loss mask) of a worked solution with calls: text pieces encoded one by one, tool results as the
    rollout encodes them and masked out (0)."""
    ids: list[int] = []
    mask: list[int] = []
    for piece, is_tool in segments(text, runner):
        piece_ids = encode_result(tokenizer, piece)  # no special tokens in the middle of a completion
        ids += piece_ids
        mask += [0 if is_tool else 1] * len(piece_ids)
    return ids, mask
