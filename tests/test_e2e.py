"""End to end through the real command line: pretrain -> SFT -> GRPO with Ray + vLLM + W&B (offline)."""

import json
import re

import pytest

from rlpractice.caches import CACHE_VARIABLES
from rlpractice.tracking import read_metrics
from tests.conftest import EAGER, run_cli

pytestmark = pytest.mark.slow


OUR_LINES = re.compile(r"\[[a-z_]+\] |sft pass@1 |run directory: ")  # what the trainer itself prints
PROGRESS = re.compile(r"(pretrain|sft|rm|rl): ")  # tqdm's bars, one per stage, on stderr


def test_three_stages_end_to_end(tmp_path, tiny_args):
    """With the engines' default settings (compiled): the compile cache lands in cache_dir too."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    default_engines = [a for a in tiny_args if a != EAGER]
    result = run_cli([*default_engines, f"hydra.run.dir={run_dir}", f"cache_dir={cache}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"run directory: {run_dir}" in result.stdout
    # the console holds the trainer's own lines and progress bars; library messages go to the run's log file and
    # each engine's output to logs/, whatever the libraries say
    assert all(OUR_LINES.match(line) for line in result.stdout.splitlines() if line.strip()), result.stdout
    bars = [part for line in result.stderr.splitlines() for part in line.split("\r") if part.strip()]
    assert all(PROGRESS.match(part) for part in bars), result.stderr[-3000:]
    assert (run_dir / "__main__.log").is_file()
    engine_logs = list((run_dir / "logs").glob("sampler_*.log"))
    assert engine_logs and all(p.stat().st_size > 0 for p in engine_logs)
    # the tools' caches go to cache_dir, in the folders caches.py names (W&B's among them)
    folders = {p.name for p in cache.iterdir()}
    assert {"wandb", "torchinductor"} <= folders <= {v.split("/")[0] for v in CACHE_VARIABLES.values()}

    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("sft_pass_at_1", "rl_pass_at_1", "rl_steps", "samples_per_prompt", "wall_seconds"):
        assert key in summary
    assert summary["rl_steps"] == 2 and summary["samples_per_prompt"] == 16
    assert 0.0 <= summary["sft_pass_at_1"] <= 1.0

    rows = read_metrics(run_dir / "metrics.jsonl")
    stages = [r["stage"] for r in rows]
    assert {"pretrain", "sft", "rl", "eval"} <= set(stages)
    rl = [r for r in rows if r["stage"] == "rl"]
    assert [r["step"] for r in rl] == [1, 2]
    for key in ("pass_rate", "reward", "reward_std", "frac_reward_zero_std", "completions/mean_length", "loss",
                "time/sample", "time/grade", "time/learn", "time/sync"):
        assert key in rl[0], key
    evals = [r for r in rows if r["stage"] == "eval"]
    assert [r["step"] for r in evals] == [0, 1, 2]
    assert all("pass@1" in r and "pass@4" in r and "maj@4" in r for r in evals)

    for name in ("pass_rates.png", "rollouts.jsonl", "checkpoints/sft/config.json", "checkpoints/rl/model.safetensors"):
        assert (run_dir / name).exists(), name
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    history = list(offline[0].glob("*.wandb"))
    assert history and b"rl/pass_rate" in history[0].read_bytes()
    assert b"rl/completions" in history[0].read_bytes()  # a table of a few completions per step, as TRL logs them


CUSTOM = '''
from rlpractice.grading.registry import Grade, verifier


@verifier("mentions_answer")
def mentions_answer(completion: str, answer: str, **columns) -> Grade:
    ok = answer in completion
    return Grade(float(ok), "custom: answer mentioned" if ok else "custom: answer not mentioned")
'''


def test_custom_verifier_selected_from_the_command_line(tmp_path, tiny_args):
    """Also runs the DAPO preset (dynamic sampling) with a KL penalty: the algorithm is independent of the
    verifier, and this keeps those paths covered end to end."""
    plugins = tmp_path / "my_verifiers"
    plugins.mkdir()
    (plugins / "mentions.py").write_text(CUSTOM)
    run_dir = tmp_path / "run"
    result = run_cli([*tiny_args, "verifier.name=mentions_answer", f"verifier.plugins=[{plugins / 'mentions.py'}]",
                      "rl.eval_every=0", "algo=dapo", "algo.kl_coef=0.05", "rl.time_budget_s=0.001",
                      f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    reasons = {json.loads(line)["reason"] for line in (run_dir / "rollouts.jsonl").read_text().splitlines()}
    assert reasons and all(r.startswith("custom: ") for r in reasons)
    rl = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["stage"] == "rl"]
    assert all(0.0 <= r["dynamic_sampling/filtered_fraction"] <= 1.0 for r in rl)
    assert all(r["kl"] >= 0.0 for r in rl)  # k3 estimator
    # the time budget stops RL after the step that crosses it, and the summary says how many steps ran
    assert [r["step"] for r in rl] == [1]
    assert json.loads((run_dir / "summary.json").read_text())["rl_steps"] == 1


def test_one_step_with_1024_samples_for_one_prompt(tmp_path, tiny_args):
    """Thousands of candidates per prompt: split into requests, streamed, learned in token-budget micro-batches."""
    run_dir = tmp_path / "run"
    result = run_cli([*tiny_args, "rl.steps=1", "rl.prompts_per_step=1", "rl.samples_per_prompt=1024",
                      "rl.eval_every=0", "eval.samples_per_problem=1", "eval.k=[1]", f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    [step] = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["stage"] == "rl"]
    assert step["samples"] == 1024
    assert 0 < step["memory/peak_rss_mb"] < 8192


BROKEN = """
from rlpractice.grading.registry import verifier


@verifier("always_raises")
def always_raises(completion: str, answer: str, **columns):
    raise KeyError("the column this verifier expects is missing")
"""


def test_a_verifier_failing_on_every_answer_stops_the_run_with_its_reason(tmp_path, tiny_args):
    plugins = tmp_path / "broken"
    plugins.mkdir()
    (plugins / "broken.py").write_text(BROKEN)
    result = run_cli([*tiny_args, f"verifier.name={plugins / 'broken.py'}:always_raises", "rl.eval_every=0",
                      f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the verifier failed on every answer of step 1") and "KeyError" in last
    assert not (tmp_path / "run" / "checkpoints" / "rl_steps").exists()  # no step trained on garbage


ASYNC_FORMAT = '''
import asyncio

from rlpractice.grading.registry import verifier


@verifier("has_answer_line")
async def has_answer_line(completion: str, answer: str, **columns) -> float:
    await asyncio.sleep(0)
    return float("Answer:" in completion)
'''


def test_countdown_experiment_with_weighted_verifiers(tmp_path, tiny_args):
    """The non-math textbook as a Hydra experiment, graded by its verifier (which reads the dataset columns
    numbers and target) plus a small async format reward, with per-verifier metrics."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "fmt.py").write_text(ASYNC_FORMAT)
    run_dir = tmp_path / "run"
    args = ["+experiment=countdown", *tiny_args[1:], "textbook.levels=[1,2]",
            "verifier.weights={countdown: 1.0, has_answer_line: 0.1}", f"verifier.plugins=[{plugins / 'fmt.py'}]",
            f"hydra.run.dir={run_dir}"]
    result = run_cli(args)
    assert result.returncode == 0, result.stderr[-3000:]
    rollouts = [json.loads(line) for line in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    assert rollouts and all(r["question"].startswith("Use the numbers") for r in rollouts)
    assert all(r["reason"].startswith("countdown: ") and "has_answer_line: " in r["reason"] for r in rollouts)
    rl = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["stage"] == "rl"]
    for r in rl:
        assert 0.0 <= r["verifier/countdown/reward"] <= 1.0 and r["verifier/has_answer_line/applied"] == 1.0
        assert r["reward"] == pytest.approx(r["verifier/countdown/reward"] + 0.1 * r["verifier/has_answer_line/reward"])


def test_sampling_ahead_overlaps_generation_with_learning(tmp_path, tiny_args):
    """rl.max_staleness=1: step t+1's samples are generated while step t learns; every step is still
    learned once, in order, with evaluations in between."""
    run_dir = tmp_path / "run"
    result = run_cli([*tiny_args, "rl.steps=3", "rl.eval_every=2", "rl.max_staleness=1", f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_metrics(run_dir / "metrics.jsonl")
    rl = [r for r in rows if r["stage"] == "rl"]
    assert [r["step"] for r in rl] == [1, 2, 3]
    assert [r["step"] for r in rows if r["stage"] == "eval"] == [0, 2, 3]
    assert all(r["samples"] == 64 and r["time/wait"] >= 0 for r in rl)
    # the ratio is taken against the sampler's log-probs: a stale batch is clipped, never a crash or a NaN
    assert all(0.0 <= r["clip_ratio"] <= 1.0 and r["loss"] == r["loss"] for r in rl)


NEVER = """
def never(completion: str, answer: str, **columns) -> float:
    return 0.0
"""


def test_a_run_that_cannot_learn_says_so_and_can_stop(tmp_path, tiny_args):
    """Every reward 0: the run warns after rl.warn_without_signal steps, logs the count, and with
    rl.stop_without_signal stops with one line saying what the completions look like."""
    (tmp_path / "never.py").write_text(NEVER)
    run_dir = tmp_path / "run"
    result = run_cli([*tiny_args, f"verifier.name={tmp_path / 'never.py'}:never", "rl.steps=4", "rl.eval_every=0",
                      "rl.warn_without_signal=2", "rl.stop_without_signal=3", f"hydra.run.dir={run_dir}"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "[rl] warning: nothing to learn for 2 steps: no sample earned any reward" in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: nothing to learn for 3 steps") and "rl.stop_without_signal=3" in last
    rl = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["stage"] == "rl"]
    assert [r["steps_without_signal"] for r in rl] == [1, 2]  # step 3 stopped before it was logged
