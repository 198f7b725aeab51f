"""Tool rollouts inside a vLLM engine: generate until a call, run the tool, append its output ids, continue.

Token-in/token-out: a sample's completion is the engine's own token ids plus each tool result encoded once,
on its own (`encode_result`); the history is never decoded and re-encoded, so the learner trains on exactly
the ids the engine continued from. Tool-output ids are marked in `tool_mask` (no loss, no ratio), and get a
0.0 placeholder log-prob (the engine never sampled them).

The engine is driven step by step (vLLM's LLMEngine add_request / step): a sample that stops at a call leaves
the batch while its tool runs in the runner's threads, and every other sample keeps decoding. When the tool
answers, the sample comes back as a new request of prompt + completion-so-far ids; the prefix cache holds its
earlier blocks, so only the new tokens are prefilled.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field

from rlpractice.plugins import import_plugin
from rlpractice.tools.runner import ToolResult, ToolRunner

FAST_TOOL_S = 0.002  # waited for tools after an engine step (a few % of a step): slower ones answer later


def encode_result(tokenizer, text: str) -> list[int]:
    """A tool result's token ids: the text encoded on its own, without special tokens (SFT does the same)."""
    return list(tokenizer.encode(text, add_special_tokens=False))


def tool_settings(cfg) -> dict | None:
    """The run's `tools` config as a plain dict (what sampler actors receive), or None when it names no tool."""
    from omegaconf import OmegaConf

    tools = cfg.get("tools")
    return OmegaConf.to_container(tools, resolve=True) if tools is not None and tools.names else None


def make_runner(settings: Mapping) -> ToolRunner:
    """The tools `settings` (the run's `tools` config as a dict) names, after importing its plugins and setting up
    the python tool's sandbox (UserError when it cannot isolate code here)."""
    for ref in settings.get("plugins", []):
        import_plugin(ref, "tools.plugins")
    if "python" in settings["names"]:
        from rlpractice.tools import python_tool

        python_tool.configure(settings.get("sandbox", "auto"))
    return ToolRunner(settings["names"], max_result_chars=settings.get("max_result_chars", 512))


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

    def stats(self) -> dict:
        return {"tool_mask": self.tool_mask, "calls": self.calls, "errors": self.errors, "timeouts": self.timeouts,
                "tool_s": self.tool_s}


def tool_rollouts(engine, tokenizer, prompt_ids: list[list[int]], counts: list[int], params, runner: ToolRunner,
                  max_calls: int, max_tokens: int, logprobs: bool) -> list[list[Rollout]]:
    """`counts[i]` rollouts continuing `prompt_ids[i]`, each at most `max_tokens` ids long (sampled and tool
    ids together). `engine`: a vLLM LLMEngine (`LLM.llm_engine`) with nothing else in flight; `params`: the
    SamplingParams of one sample (n=1); stop strings and lengths are set here."""
    from vllm.sampling_params import RequestOutputKind

    rollouts = [Rollout(i) for i, k in enumerate(counts) for _ in range(k)]
    pending: dict[Future, int] = {}

    def request(j: int) -> None:
        r = rollouts[j]
        p = params.clone()
        p.n, p.max_tokens, p.output_kind = 1, max_tokens - len(r.ids), RequestOutputKind.FINAL_ONLY
        p.stop = list(runner.stop_strings) if r.calls < max_calls else []  # over the cap: no more calls
        p.include_stop_str_in_output, p.detokenize = True, True  # vLLM finds stop strings in decoded text
        r.turn += 1
        engine.add_request(f"{j}.{r.turn}", {"prompt_token_ids": prompt_ids[r.prompt] + r.ids}, p)

    def finished(j: int, out) -> None:
        r, c = rollouts[j], out.outputs[0]
        r.ids += c.token_ids
        r.tool_mask += [0] * len(c.token_ids)
        if logprobs:
            r.logps += list(c.logprobs.logprobs)
        at_call = c.finish_reason == "stop" and isinstance(c.stop_reason, str)  # a stop string, not EOS
        if not at_call or len(r.ids) >= max_tokens:
            r.finish = "length" if len(r.ids) >= max_tokens and at_call else c.finish_reason
            return
        call = runner.parse(tokenizer.decode(r.ids))  # read from the ids: the engine's text ends at the stop
        if call is None:  # a stop string that is no call ('>>' in code): keep writing
            request(j)
            return
        r.calls += 1
        pending[runner.submit(call)] = j

    def answered(j: int, result: ToolResult) -> None:
        r = rollouts[j]
        r.errors += result.error is not None and not result.timed_out
        r.timeouts += result.timed_out
        r.tool_s += result.seconds
        ids = encode_result(tokenizer, result.text)[: max_tokens - len(r.ids)]
        r.ids += ids
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
            if len(pending) > calls:  # a fast tool (the calculator) answers now: its sample rejoins the next step
                wait(list(pending), timeout=FAST_TOOL_S)
        else:  # every live sample waits on a tool
            wait(list(pending), return_when=FIRST_COMPLETED)
        for fut in [f for f in pending if f.done()]:
            answered(pending.pop(fut), fut.result())
    grouped: list[list[Rollout]] = [[] for _ in counts]
    for r in rollouts:
        grouped[r.prompt].append(r)
    return grouped

