"""Tool rollouts inside a vLLM engine: generate until a call, run the tool, append its output ids, continue.

Token-in/token-out: a sample's completion is the engine's own token ids plus each tool result encoded once,
on its own (`encode_result`); the history is never decoded and re-encoded, so the learner trains on exactly
the ids the engine continued from. Tool-output ids are marked in `tool_mask` (no loss, no ratio), and get a
0.0 placeholder log-prob (the engine never sampled them).

The engine is driven step by step (vLLM's LLMEngine add_request / step): a sample that stops at a call leaves
the batch while its tool runs in the runner's threads (a quick inline tool, the calculator, runs right away),
and every other sample keeps decoding. When the tool answers, the sample comes back as a new request of
prompt + completion-so-far ids before the next step; the prefix cache holds its earlier full KV blocks, so only
the tokens after the last full block are prefilled again.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field

from rlpractice.config_schema import ToolsConfig
from rlpractice.plugins import import_plugin
from rlpractice.tools.runner import ToolResult, ToolRunner

FAST_TOOL_S = 0.002  # waited for threaded tools after an engine step (a few % of a step): slower ones join later


def encode_result(tokenizer, text: str) -> list[int]:
    """A tool result's token ids: the text encoded on its own, without special tokens (SFT does the same)."""
    return list(tokenizer.encode(text, add_special_tokens=False))


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


class StopSettings:
    """Where generation stops for a call. A stop string whose last character is no letter or digit ('>>', '</name>')
    stops on token ids: the ids of every token that can end it (its text holds the whole string, or starts with
    the string's tail). The engine then never detokenizes, and a token that ends no call (a lone '>') just
    continues. Other stop strings ('```output': tokens starting with 't' would end it) are vLLM stop strings,
    found in the detokenized text, which costs every sample a detokenizer step per token
    (scripts/bench_tools.py)."""

    def __init__(self, stop_strings: Sequence[str], tokenizer):
        by_ids = [s for s in stop_strings if not s[-1].isalnum()]
        self.strings = [s for s in stop_strings if s not in by_ids]
        texts = enumerate(tokenizer.batch_decode([[i] for i in range(len(tokenizer))])) if by_ids else []
        self.token_ids = frozenset(i for i, t in texts if any(ends_in(t, s) for s in by_ids))

    @classmethod
    def of(cls, stop_strings: Sequence[str], tokenizer) -> StopSettings:
        """Made once per tokenizer and stop strings (reading the vocabulary takes a moment)."""
        key = (id(tokenizer), tuple(stop_strings))
        if key not in _STOPS:
            _STOPS[key] = (tokenizer, cls(stop_strings, tokenizer))  # the tokenizer held: its id stays its own
        return _STOPS[key][1]

    def apply(self, params, calls: bool = True):
        """`params` (a clone: changed in place) set to stop at calls (or at none: `calls=False`), output once."""
        from vllm.sampling_params import RequestOutputKind

        params.n, params.output_kind, params.skip_clone = 1, RequestOutputKind.FINAL_ONLY, True
        params.stop = list(self.strings) if calls else []
        params.stop_token_ids = sorted(self.token_ids) if calls else []
        params.include_stop_str_in_output = True
        params.detokenize = bool(params.stop)  # vLLM finds stop strings in decoded text
        return params

    def at(self, stop_reason) -> bool:
        """Whether vLLM's `stop_reason` is one of these stops (not end-of-text, whose reason is None)."""
        return isinstance(stop_reason, str) or stop_reason in self.token_ids


_STOPS: dict[tuple, tuple] = {}


def ends_in(token_text: str, stop: str) -> bool:
    """Whether a stop string can end inside this token: it holds the whole string, or starts with a tail of it."""
    return stop in token_text or any(token_text.startswith(stop[k:]) for k in range(1, len(stop)))


@dataclass
class Rollout:
    """One sample in flight: its completion so far and what its tools did."""

    prompt: int  # index of the prompt it continues
    ids: list[int] = field(default_factory=list)  # sampled ids and tool-output ids, in order
    tool_mask: list[int] = field(default_factory=list)  # 1: a tool's output (not sampled)
    logps: list[float] = field(default_factory=list)
    finish: str | None = None
    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    tool_s: float = 0.0
    turn: int = 0  # requests made so far (request ids must be unique)
    written: int = 0  # where the text after the last tool result starts, in `ids`


def tool_rollouts(engine, tokenizer, prompt_ids: list[list[int]], counts: list[int], params, runner: ToolRunner,
                  max_calls: int) -> list[list[Rollout]]:
    """`counts[i]` rollouts continuing `prompt_ids[i]`, each at most params.max_tokens ids long (sampled and tool
    ids together), with the engine's log-probs when `params` asks for them. `engine`: a vLLM LLMEngine
    (`LLM.llm_engine`) with nothing else in flight; `params`: the SamplingParams of one sample (n=1); stop strings
    and the lengths of each turn are set here."""
    max_tokens, logprobs = params.max_tokens, params.logprobs is not None
    rollouts = [Rollout(i) for i, k in enumerate(counts) for _ in range(k)]
    pending: dict[Future, int] = {}
    encoded: dict[str, list[int]] = {}

    stops = StopSettings.of(runner.stop_strings, tokenizer)
    calling = stops.apply(params.clone())  # templates: each request shallow-copies one (skip_clone)
    last_turn = stops.apply(params.clone(), calls=False)  # over the cap: no more calls

    def request(j: int) -> None:
        r = rollouts[j]
        p = copy.copy(calling if r.calls < max_calls else last_turn)
        p.max_tokens = max_tokens - len(r.ids)
        r.turn += 1
        engine.add_request(f"{j}.{r.turn}", {"prompt_token_ids": prompt_ids[r.prompt] + r.ids}, p)

    def finished(j: int, out) -> None:
        r, c = rollouts[j], out.outputs[0]
        r.ids += c.token_ids
        r.tool_mask += [0] * len(c.token_ids)
        if logprobs:
            r.logps += list(c.logprobs.logprobs)
        at_call = c.finish_reason == "stop" and stops.at(c.stop_reason)  # a call's end, not EOS
        if not at_call or len(r.ids) >= max_tokens:
            r.finish = "length" if len(r.ids) >= max_tokens and at_call else c.finish_reason
            return
        # read from the ids (the engine's text ends at the stop), from the last result on: no call spans one
        call = runner.parse(tokenizer.decode(r.ids[r.written:]))
        if call is None:  # no call after all ('>>' in code, a lone '>'): keep writing
            request(j)
            return
        r.calls += 1
        pending[runner.submit(call)] = j

    def answered(j: int, result: ToolResult) -> None:
        r = rollouts[j]
        r.errors += result.error is not None and not result.timed_out
        r.timeouts += result.timed_out
        r.tool_s += result.seconds
        if result.text not in encoded:  # results repeat (' 16'): encoded once per call of this function
            encoded[result.text] = encode_result(tokenizer, result.text)
        ids = encoded[result.text][: max_tokens - len(r.ids)]
        r.ids += ids
        r.written = len(r.ids)
        r.tool_mask += [1] * len(ids)
        if logprobs:
            r.logps += [0.0] * len(ids)  # never sampled: masked out of the loss and the mismatch metric
        if len(r.ids) >= max_tokens:
            r.finish = "length"
        else:
            request(j)

    for j in range(len(rollouts)):
        request(j)
    while engine.has_unfinished_requests() or pending:
        if engine.has_unfinished_requests():
            calls = len(pending)
            for out in engine.step():
                if out.finished:
                    finished(int(out.request_id.split(".")[0]), out)
            if len(pending) > calls:  # a tool that answers within FAST_TOOL_S rejoins at the next step
                wait(list(pending), timeout=FAST_TOOL_S)
        else:  # every live sample waits on a tool
            wait(list(pending), return_when=FIRST_COMPLETED)
        for fut in [f for f in pending if f.done()]:
            answered(pending.pop(fut), fut.result())
    grouped: list[list[Rollout]] = [[] for _ in counts]
    for r in rollouts:
        grouped[r.prompt].append(r)
    return grouped

