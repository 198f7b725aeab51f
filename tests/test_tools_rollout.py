"""Tool rollouts through a real vLLM engine in a Ray actor: calls stop generation, the tool's output ids are
appended (token in, token out), masked from the loss, and a policy-gradient step trains on exactly those ids.

The model is random, so its text is noise; the tools below (a user's own, registered in a few lines in a plugin
file the engine's process imports) are called by letters that noise is full of: 'a...e' calls `vowels`,
'o...n' calls `boom` (raises), 'i...s' calls `sleepy` (hangs past its time limit)."""

import math
from itertools import pairwise

import pytest
import ray
import torch
from hydra import compose, initialize_config_dir

from rlpractice import model as policy
from rlpractice.algorithm.settings import LossSettings
from rlpractice.environments.loop import encode_result
from rlpractice.environments.settings import EpisodeSettings
from rlpractice.environments.tool_env import tool_settings
from rlpractice.grading.pool import GradingPool
from rlpractice.learner.steps import policy_gradient_step
from rlpractice.learner.update import sequences
from rlpractice.rollout.batch import tool_metrics
from rlpractice.rollout.samplers import Samplers, sample_groups
from rlpractice.textbook.math_textbook import build_textbook
from rlpractice.textbook.problems import Problem
from rlpractice.tokenizer import train_tokenizer
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

USER_TOOLS = '''
import time
from rlpractice.tools import tool
from rlpractice.tools.syntax import Syntax

@tool("vowels", syntax=Syntax("a", "e", " [", "]"))
def vowels(text: str) -> str:
    return str(sum(c in "aeiou" for c in text))

@tool("boom", syntax=Syntax("o", "n", " [", "]"))
def boom(text: str) -> str:
    raise RuntimeError("kaboom")

@tool("sleepy", syntax=Syntax("i", "s", " [", "]"), timeout=1.0)
def sleepy(text: str) -> str:
    with open(SLEEPY_STARTS, "a") as f:  # when each call began (the test's file)
        f.write(f"{time.monotonic()}\\n")
    time.sleep(3.0)
    return "late"
'''


def runs(mask: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of 1s."""
    out, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        if not m and start is not None:
            out.append((start, i))
            start = None
    return out


def test_tool_rollout_appends_tool_ids_masks_them_and_trains(tmp_path):
    plugin, sleepy_starts = tmp_path / "my_tools.py", tmp_path / "sleepy_starts.txt"
    plugin.write_text(USER_TOOLS.replace("SLEEPY_STARTS", repr(str(sleepy_starts))))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "+experiment=math", "sampler.num_samplers=1", "sampler.max_new_tokens=40",
            "sampler.engine.dtype=float32", "sampler.engine.enforce_eager=true",
            "tools.names=[vowels,boom,sleepy]", "tools.max_calls=3", f"tools.plugins=[{plugin}]"])
    book = build_textbook(0, 300, 100, 8, 8)
    tok = train_tokenizer(book.exposition, 400)
    model = policy.new_model(tok, 64, 2, 2, 128, 256, seed=0)
    policy.save(model, tok, tmp_path / "ckpt")
    tools = tool_settings(cfg)
    samplers = Samplers(str(tmp_path / "ckpt"), cfg.sampler, cfg.cluster, seed=0)
    pool = GradingPool.from_config(cfg.verifier)
    try:
        groups, _ = sample_groups(samplers, pool, book.practice[:4], 16, logprobs=True,
                                  episodes=EpisodeSettings(tools=tools))
        samples = [s for g in groups for s in g.samples]
        assert len(samples) == 64
        for s in samples:
            assert len(s.observation_mask) == len(s.ids) == len(s.sampler_logps) <= 40
            assert s.tool_calls <= 3
            for a, b in runs(s.observation_mask):
                assert all(x == 0.0 for x in s.sampler_logps[a:b])  # placeholders: never sampled
                text = tok.decode(s.ids[a:b])
                if b < len(s.ids):  # not cut by the length cap: a whole result, encoded on its own
                    assert text.startswith(" [") and text.endswith("]") and encode_result(tok, text) == s.ids[a:b]
                else:  # cut by it, maybe to its first token (' ')
                    assert text.startswith(" [") or " [".startswith(text), text
        m = tool_metrics(samples)
        assert m["tools/calls_per_completion"] > 1
        assert sum(s.tool_errors for s in samples) > 0  # boom's exception became its output
        assert sum(s.tool_timeouts for s in samples) > 0  # sleepy's hang became a timeout
        assert any("kaboom" in s.text for s in samples) and any("timeout" in s.text for s in samples)
        # tools ran beside each other: two sleepy calls were waiting at once. A rollout that waited on one call at a
        # time would start the next only after the runner gave up on the last (its 1 s limit, counted from the
        # submit): starts under half of that apart leave room for a thread's pick-up, and calls made in one engine
        # step start moments apart however fast this machine decodes
        starts = sorted(float(t) for t in sleepy_starts.read_text().split())
        assert len(starts) >= 2 and min(b - a for a, b in pairwise(starts)) < 0.5, starts

        seqs = [q for g in groups for q in sequences(g, torch.linspace(-1, 1, len(g.samples)))]
        for q, s in zip(seqs, samples, strict=True):
            assert q.loss_mask[-len(s.ids):] == [1 - t for t in s.observation_mask]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        out = policy_gradient_step(model, optimizer, seqs, LossSettings.from_config(cfg.algo, 40),
                                   pad_id=tok.pad_token_id, share_prompts=True)
        assert math.isfinite(out["loss"]) and out["grad_norm"] > 0
        # learner vs engine log-probs over the sampled ids only: float32 on both sides agree closely; had the tool
        # ids' 0.0 placeholders been counted, or the ids shifted, this would be of order 1
        assert out["logprob_mismatch"] < 0.02
    finally:
        pool.close()
        samplers.shutdown()
        ray.shutdown()


def test_math_tools_experiment_reports_pass_at_1_with_and_without_tools(tmp_path, tiny_args):
    import json

    from tests.conftest import run_cli

    args = [a.replace("+experiment=math", "+experiment=math_tools") for a in tiny_args]
    proc = run_cli([*args, "sampler.max_new_tokens=48", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tools"] == ["calculator"]
    for stage in ("sft", "rl"):
        assert 0.0 <= summary[f"{stage}_pass_at_1_no_tools"] <= 1.0
        assert f"{stage}_tools/calls_per_completion" in summary
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rl = [r for r in rows if r["stage"] == "rl"]
    assert len(rl) == 2 and all("tools/calls_per_completion" in r and "tools/seconds" in r for r in rl)
    assert [r["step"] for r in rows if r["stage"] == "eval_no_tools"] == [0, 2]


def test_python_tool_runs_a_models_code_in_the_sandbox_inside_a_rollout(tmp_path):
    """A tiny model taught one program by heart writes it; the rollout stops at '```output', the sandbox runs the
    code, and its output (never in the training text) comes back as masked tool ids, then the model goes on."""
    prompt, program = "Compute 6 times 7.", "\n```python\nprint(6 * 7 + 0)\n```\n```output"
    tok = train_tokenizer([prompt + program] * 20 + build_textbook(0, 50, 10, 2, 2).exposition, 300)
    model = policy.new_model(tok, 64, 2, 2, 128, 128, seed=0)
    ids = torch.tensor([tok(prompt + program)["input_ids"] + [tok.eos_token_id]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):  # memorise the one program (a second or two)
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    policy.save(model, tok, tmp_path / "ckpt")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "+experiment=math", "+tools=python", "sampler.num_samplers=1", "sampler.max_new_tokens=48",
            "sampler.engine.dtype=float32", "sampler.engine.enforce_eager=true", "model.max_seq_len=128"])
    tools = tool_settings(cfg)
    samplers = Samplers(str(tmp_path / "ckpt"), cfg.sampler, cfg.cluster, seed=0)
    try:
        [(_, chunk)] = list(samplers.sample([Problem("q", "42", prompt_text=prompt)], 4, temperature=0.0,
                                                 logprobs=True, episodes=EpisodeSettings(tools=tools)))
    finally:
        samplers.shutdown()
        ray.shutdown()
    for s in chunk.samples:
        assert s.tool_calls == 1 and s.tool_errors == 0 and s.tool_timeouts == 0 and s.tool_s > 0
        assert s.text.startswith(program.lstrip("\n")) or s.text.startswith(program), s.text
        [(a, b)] = runs(s.observation_mask)
        assert tok.decode(s.ids[a:b]) == "\n42\n```\n"  # the sandbox's output, encoded on its own
        assert s.ids[a:b] == encode_result(tok, "\n42\n```\n") and all(x == 0.0 for x in s.sampler_logps[a:b])
        assert tok.decode(s.ids[:a]).endswith("```output")  # the call the model wrote, up to its stop string
