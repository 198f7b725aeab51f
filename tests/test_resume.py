"""Kill the trainer with SIGKILL in the middle of RL or of pretraining, then resume: nothing repeated,
nothing skipped.

vLLM's sampling RNG state cannot be saved, so a resumed run does not reproduce the uninterrupted run's
samples bit for bit. What is checked instead is the strongest property that holds: the resumed run
restarts from the exact weights, optimizer, RNG and data position of its last checkpoint (unit-tested
in test_checkpoint.py; pretraining and SFT, which need no vLLM, resume bitwise in test_stage_resume.py),
and its metrics continue step by step with no step repeated or skipped.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, cli_env, run_cli

pytestmark = pytest.mark.slow


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def kill_once_logged(args: list[str], metrics, stage: str, step: int) -> None:
    """Start the CLI and SIGKILL it once metrics.jsonl has a `stage` row at `step` or later."""
    proc = subprocess.Popen([sys.executable, "-m", "rlpractice", *args], cwd=ROOT, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not any(r["stage"] == stage and r["step"] >= step for r in rows(metrics)):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and everything it started (Ray, vLLM, graders)
    proc.wait()


@pytest.mark.parametrize("ranks", [1, 2])
def test_sigkill_during_rl_then_resume(tmp_path, tiny_args, ranks):
    """`ranks`: learner.num_workers; with 2, all three stages learn on two FSDP2 ranks (Ray actors the kill takes
    down with the trainer), and the resumed run starts them again."""
    run_dir = tmp_path / "run"
    # with the curriculum on, its per-problem statistics are part of what must survive the kill
    args = [*tiny_args, "rl.steps=5", "rl.eval_every=0", "rl.curriculum=true", f"hydra.run.dir={run_dir}"]
    if ranks > 1:
        args += [f"learner.num_workers={ranks}", "cluster.num_cpus=4", "algo.lr_schedule=cosine"]  # its state too
    metrics = run_dir / "metrics.jsonl"
    kill_once_logged(args, metrics, "rl", 2)
    before = metrics.read_text()
    killed_at = max(r["step"] for r in rows(metrics) if r["stage"] == "rl")
    assert killed_at < 5

    # a new run pointed at this directory without resume=true refuses and changes nothing
    refused = run_cli([*args])
    assert refused.returncode != 0 and "resume=true" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert metrics.read_text() == before

    resumed = run_cli([*args, "resume=true"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "[rl] resuming after step" in resumed.stdout
    assert ("[learner] 2 ranks ready (FSDP2 over gloo" in resumed.stdout) == (ranks == 2)
    if ranks == 2:  # the cosine schedule continued where it was: it reaches 0 at the last step, each step once
        lrs = [r["lr"] for r in rows(metrics) if r["stage"] == "rl"]
        assert lrs[-1] == pytest.approx(0.0, abs=1e-12) and all(a > b for a, b in zip(lrs[:-1], lrs[1:], strict=True))
    assert metrics.read_text().startswith(before)  # appended, never rewritten
    rl_steps = [r["step"] for r in rows(metrics) if r["stage"] == "rl"]
    assert rl_steps == [1, 2, 3, 4, 5]
    assert all("curriculum/seen_fraction" in r for r in rows(metrics) if r["stage"] == "rl")
    assert [r["step"] for r in rows(metrics) if r["stage"] == "eval"] == [0, 5]  # SFT eval not redone
    assert json.loads((run_dir / "summary.json").read_text())["rl_steps"] == 5
    assert len(list((run_dir / "checkpoints" / "rl_steps").glob("step_*"))) == 2
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) >= 1


def test_sigkill_during_pretraining_then_resume(tmp_path, tiny_args):
    run_dir = tmp_path / "run"
    args = [*tiny_args, "pretrain.steps=40", "pretrain.log_every=5", "pretrain.checkpoint_every=5", "rl.steps=1",
            "rl.eval_every=0", f"hydra.run.dir={run_dir}"]
    metrics = run_dir / "metrics.jsonl"
    kill_once_logged(args, metrics, "pretrain", 10)
    before = metrics.read_text()
    killed_at = max(r["step"] for r in rows(metrics) if r["stage"] == "pretrain")
    assert killed_at < 40 and not (run_dir / "checkpoints" / "pretrain").exists()

    resumed = run_cli([*args, "resume=true"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "[pretrain] resuming after step" in resumed.stdout
    assert metrics.read_text().startswith(before)  # appended, never rewritten
    assert [r["step"] for r in rows(metrics) if r["stage"] == "pretrain"] == list(range(5, 41, 5))
    assert [r["step"] for r in rows(metrics) if r["stage"] == "sft"] == [10]
    assert [r["step"] for r in rows(metrics) if r["stage"] == "rl"] == [1]
    assert (run_dir / "checkpoints" / "pretrain" / "config.json").is_file()
    assert not (run_dir / "checkpoints" / "pretrain_steps").exists()  # the final checkpoint replaced them
