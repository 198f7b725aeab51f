"""Episodes inside a vLLM engine: generate a turn, let the environment answer, append its ids, continue.

Token-in/token-out: an episode's completion is the engine's own token ids plus each observation encoded once, on
its own (`encode_result`); the history is never decoded and re-encoded, so the learner trains on exactly the ids
the engine continued from. Observation ids are marked in `observation_mask` (no loss, no ratio) and get a 0.0
placeholder log-prob (the engine never sampled them).

The engine is driven step by step (vLLM's LLMEngine add_request / step): an episode whose turn ended leaves the
batch while its environment answers in a worker thread (an `inline` environment, the calculator, answers right
away), and every other episode keeps decoding. When the answer comes, the episode comes back as a new request of
prompt + completion-so-far ids before the next engine step; the prefix cache holds its earlier full KV blocks, so
only the tokens after the last full block are prefilled again. Tools are one environment among others
(tool_env.py); check and retry (retry.py) is another.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from rlpractice.environments.base import Environment, Step, check_step, episode_reward
from rlpractice.grading.registry import Grade
from rlpractice.textbook.problems import Problem
from rlpractice.tools.runner import Deadlines

FAST_STEP_S = 0.002  # waited for threaded steps after an engine step (a few % of a step): slower ones join later


def encode_result(tokenizer, text: str) -> list[int]:
    """An observation's token ids: the text encoded on its own, without special tokens (SFT does the same)."""
    return list(tokenizer.encode(text, add_special_tokens=False))


class StopSettings:
    """Where generation stops for an environment. A stop string whose last character is no letter or digit ('>>',
    '</name>') stops on token ids: the ids of every token that can end it (its text holds the whole string, or
    starts with the string's tail). The engine then never detokenizes, and a token that ends no call (a lone '>')
    just continues. Other stop strings ('```output': tokens starting with 't' would end it) are vLLM stop strings,
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

    def apply(self, params, stops: bool = True):
        """`params` (a clone: changed in place) set to stop at these stops (or at none: `stops=False`), output
        once."""
        from vllm.sampling_params import RequestOutputKind

        params.n, params.output_kind, params.skip_clone = 1, RequestOutputKind.FINAL_ONLY, True
        params.stop = list(self.strings) if stops else []
        params.stop_token_ids = sorted(self.token_ids) if stops else []
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
class Episode:
    """One sample in flight: its completion so far and what its environment said."""

    prompt: int  # index of the prompt it continues
    env: Environment
    ids: list[int] = field(default_factory=list)  # sampled ids and observation ids, in order
    observation_mask: list[int] = field(default_factory=list)  # 1: an observation's id (not sampled)
    logps: list[float] = field(default_factory=list)
    finish: str | None = None
    turns: int = 0  # model turns that got an answer (an observation) so far
    turn_rewards: list[float | None] = field(default_factory=list)  # one per model turn
    info: dict = field(default_factory=dict)  # the steps' numbers summed; their last "reason"
    failure: str | None = None  # why the environment ended it ("error: ...", "timeout: ...")
    requests: int = 0  # requests made so far (request ids must be unique)
    turn_start: int = 0  # where the text after the last observation starts, in `ids`

    def grade(self, discount: float) -> Grade | None:
        """The episode's reward when its environment gives one (else None: the verifier grades its text)."""
        if self.failure is not None:
            return Grade(0.0, self.failure)
        if not getattr(self.env, "gives_reward", False):
            return None
        reason = self.info.get("reason", "")
        if self.finish == "length" and not any(r is not None for r in self.turn_rewards):
            reason = "cut at max_new_tokens before the environment's verdict"
        elif self.finish == "turns":
            reason = f"cut at the turn cap; {reason}"
        return Grade(episode_reward(self.turn_rewards, discount), str(reason))


def start_episodes(problems: Sequence[Problem], counts: Sequence[int], make_env: Callable[[], Environment],
                   tokenizer) -> tuple[list[list[int]], list[Episode]]:
    """Each problem's prompt ids and `counts[i]` episodes of it, reset. The first observation (`reset`'s text, or the
    problem's prompt) must be the same for every episode of a problem: a group shares its prompt ids. An
    environment whose reset fails starts an episode that is already over (reward 0, the reason)."""
    prompt_ids, episodes = [], []
    for i, (problem, k) in enumerate(zip(problems, counts, strict=True)):
        first: str | None = None
        for _ in range(k):
            episode, text = Episode(i, None), None  # type: ignore[arg-type]
            try:
                episode.env = make_env()
                text = episode.env.reset(problem)
                if text is not None and not isinstance(text, str):
                    raise ValueError(f"reset() returned a {type(text).__name__}, not a str or None")
                text = text or problem.prompt
                if first is not None and text != first:
                    raise ValueError("reset() gave this episode another first observation than the others of its "
                                     "problem; a group shares one prompt")
                first = text
            except Exception as exc:  # noqa: BLE001 - a broken environment ends its episode, not the run
                end_failed(episode, reason(exc, "reset"), tokenizer)
            episodes.append(episode)
        prompt_ids.append(list(tokenizer.encode(first or problem.prompt)))
    return prompt_ids, episodes


def reason(exc: BaseException, where: str) -> str:
    """One line for a failed environment call, counted as a failure by the trainer (grading.registry.is_failure)."""
    text = str(exc)
    if text.startswith(("error:", "timeout", "crash")):  # an isolated environment says what happened itself
        return text[:300]
    return f"error: environment {where}() raised {type(exc).__name__}: {text}"[:300]


def end_failed(episode: Episode, why: str, tokenizer) -> None:
    """End `episode` with reward 0 and `why`. One unsampled end-of-text id when it has no ids yet, so that it is a
    completion the learner can read (masked: nothing to learn from)."""
    episode.failure, episode.finish = why, "stop"
    if not episode.ids:
        episode.ids, episode.observation_mask, episode.logps = [tokenizer.eos_token_id], [1], [0.0]


def run_episodes(engine, tokenizer, prompt_ids: list[list[int]], episodes: list[Episode], params, max_turns: int,
                 step_timeout_s: float) -> list[Episode]:
    """Run `episodes` (from `start_episodes`) to their end, each at most params.max_tokens ids long (sampled and
    observation ids together) and `max_turns` model turns, with the engine's log-probs when `params` asks for
    them. `engine`: a vLLM LLMEngine (`LLM.llm_engine`) with nothing else in flight; `params`: the
    SamplingParams of one sample (n=1); stops and the lengths of each turn are set here. An environment step
    that raises, returns something malformed or takes longer than `step_timeout_s` (unless the environment sets
    its own `step_timeout_s`, None: it enforces its own limits) ends its episode with reward 0."""
    max_tokens, logprobs = params.max_tokens, params.logprobs is not None
    live = [e for e in episodes if e.finish is None]
    if not live:
        return episodes
    stop_strings = live[0].env.stop_strings  # one kind of environment per call
    stops = StopSettings.of(tuple(stop_strings), tokenizer)
    turn = stops.apply(params.clone())  # templates: each request shallow-copies one (skip_clone)
    last_turn = stops.apply(params.clone(), stops=False)  # over the cap: write to the end
    threads = ThreadPoolExecutor(16, thread_name_prefix="env-step")
    deadlines = Deadlines()
    pending: dict[Future, int] = {}
    encoded: dict[str, list[int]] = {}

    def request(j: int) -> None:
        e = episodes[j]
        p = copy.copy(turn if e.turns < max_turns - 1 else last_turn)
        p.max_tokens = max_tokens - len(e.ids)
        e.requests += 1
        engine.add_request(f"{j}.{e.requests}", {"prompt_token_ids": prompt_ids[e.prompt] + e.ids}, p)

    def submit(j: int, text: str) -> Future:
        env, done, lock = episodes[j].env, Future(), threading.Lock()

        def settle(result: Step | BaseException) -> None:  # the step's answer or its deadline, whichever is first
            with lock:
                if not done.done():
                    done.set_result(result)

        def work() -> None:
            try:
                settle(check_step(env.step(text)))
            except BaseException as exc:  # noqa: BLE001 - the episode's failure, not the run's
                settle(exc)

        if getattr(env, "inline", False):
            work()
            return done
        threads.submit(work)
        limit = getattr(env, "step_timeout_s", step_timeout_s)
        if limit is not None:
            deadlines.add(time.monotonic() + limit, settle,
                          TimeoutError(f"timeout: environment step took longer than {limit:g} s"))
        return done

    def finished(j: int, out) -> None:
        e, c = episodes[j], out.outputs[0]
        e.ids += c.token_ids
        e.observation_mask += [0] * len(c.token_ids)
        if logprobs:
            e.logps += list(c.logprobs.logprobs)
        if len(e.ids) >= max_tokens or c.finish_reason == "length":
            e.finish = "length"
            return
        at_stop = stops.at(c.stop_reason)  # a stop string's end (a call), not end-of-text
        # read from the ids (the engine's text ends at the stop), from the last observation on
        pending[submit(j, tokenizer.decode(e.ids[e.turn_start:], skip_special_tokens=True))] = (j, at_stop)

    def answered(j: int, at_stop: bool, result: Step | BaseException) -> None:
        e = episodes[j]
        if isinstance(result, BaseException):
            end_failed(e, reason(result, "step"), tokenizer)
            return
        ends_turn = result.done or bool(result.observation) or not at_stop
        if ends_turn:  # one reward per model turn (a step that says "keep writing" ends none)
            e.turn_rewards.append(result.reward)
        for k, v in result.info.items():
            if k == "reason":
                e.info[k] = v
            elif isinstance(v, int | float) and not isinstance(v, bool):
                e.info[k] = e.info.get(k, 0) + v
        if result.done or (not result.observation and not at_stop):  # after end-of-text, silence ends it too
            e.finish = "stop"
            return
        if result.observation:
            if e.turns >= max_turns - 1:  # an environment that never ends is cut at the turn cap
                e.finish = "turns"
                return
            if result.observation not in encoded:  # observations repeat (' 16'): encoded once per call here
                encoded[result.observation] = encode_result(tokenizer, result.observation)
            ids = encoded[result.observation][: max_tokens - len(e.ids)]
            e.ids += ids
            e.observation_mask += [1] * len(ids)
            if logprobs:
                e.logps += [0.0] * len(ids)  # never sampled: masked out of the loss and the mismatch metric
            e.turns += 1
            e.turn_start = len(e.ids)
            if len(e.ids) >= max_tokens:
                e.finish = "length"
                return
        request(j)  # no observation after a stop string: keep writing the same turn

    try:
        for j, e in enumerate(episodes):
            if e.finish is None:
                request(j)
        while engine.has_unfinished_requests() or pending:
            if engine.has_unfinished_requests():
                waiting = len(pending)
                for out in engine.step():
                    if out.finished:
                        finished(int(out.request_id.split(".")[0]), out)
                if len(pending) > waiting:  # a step that answers within FAST_STEP_S rejoins at the next one
                    wait(list(pending), timeout=FAST_STEP_S)
            else:  # every live episode waits on its environment
                wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in [f for f in pending if f.done()]:
                answered(*pending.pop(fut), fut.result())
    finally:
        threads.shutdown(wait=False, cancel_futures=True)  # a hung step's thread is left to finish on its own
        deadlines.close()
    return episodes
