"""Pretraining and SFT stopped part-way, then resumed, end bitwise where an uninterrupted run ends, and log
each step once. A stop is an exception from inside a training step: what a kill leaves behind, in one process."""

from pathlib import Path

import pytest
import ray
import torch
from hydra import compose, initialize_config_dir

from rlpractice import model as policy
from rlpractice.checkpoint import complete_checkpoints
from rlpractice.learner.local import LocalLearner
from rlpractice.learner.ranks import LearnerGroup
from rlpractice.stages import pretrain
from rlpractice.stages.pretrain import run_pretrain
from rlpractice.stages.sft import run_sft
from rlpractice.textbook.math_textbook import build_textbook
from rlpractice.tokenizer import train_tokenizer
from rlpractice.tracking import read_metrics
from tests.conftest import ROOT
from tests.stop_resume import assert_resumed_like_straight, stop_in_call, tracking

BOOK = build_textbook(0, 200, 50, 10, 4)
STEPS, EVERY = 12, 4  # checkpoints after steps 4 and 8; the stop comes inside step 7, after step 6 was logged


def config(*overrides: str):
    tiny = ["model.hidden_size=64", "model.num_heads=2", "model.num_layers=2", "model.intermediate_size=128",
            "model.vocab_size=300", "learner.device=cpu", "pretrain.block_size=32"]
    for stage in ("pretrain", "sft"):
        tiny += [f"{stage}.steps={STEPS}", f"{stage}.batch_size=4", f"{stage}.log_every=2",
                 f"{stage}.checkpoint_every={EVERY}", f"{stage}.warmup_steps=2"]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["+experiment=math", *tiny, *overrides])


def train(stage: str, cfg, run_dir: Path):
    """The stage as the pipeline runs it; SFT starts from the same fresh model every time."""
    with tracking(cfg, run_dir) as tracker:
        if stage == "pretrain":
            return run_pretrain(cfg, BOOK.exposition, tracker, run_dir / "steps")[0]
        tok = train_tokenizer(BOOK.exposition, 300)
        base = policy.new_model(tok, 64, 2, 2, 128, 256, seed=0)
        return run_sft(cfg, base, tok, BOOK.worked, tracker, run_dir / "steps")


def rows(run_dir: Path, stage: str) -> list[tuple]:
    return [(r["step"], r["loss"], r["lr"]) for r in read_metrics(run_dir / "metrics.jsonl") if r["stage"] == stage]


@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_stopped_and_resumed_stage_ends_bitwise_like_a_straight_run(stage, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    straight = train(stage, config(), tmp_path / "straight")
    assert [p.name for p in complete_checkpoints(tmp_path / "straight" / "steps")] == ["step_000004", "step_000008"]

    run_dir = tmp_path / "stopped"
    stop_in_call(monkeypatch, LocalLearner, "lm_step", 7, lambda: train(stage, config(), run_dir))
    assert [r[0] for r in rows(run_dir, stage)] == [2, 4, 6]

    # the resumed run reads its tokenizer from the checkpoint: a retrained one could number tokens differently
    monkeypatch.setattr(pretrain, "train_tokenizer", lambda *a: pytest.fail("tokenizer retrained on resume"))
    resumed = train(stage, config("resume=true"), run_dir)
    assert_resumed_like_straight(straight, resumed, tmp_path / "straight", run_dir, stage, ("loss", "lr"), 4)


@pytest.mark.slow
def test_a_stage_saved_by_two_learner_ranks_resumes_in_one_process(tmp_path, monkeypatch):
    """Checkpoints hold full tensors: pretraining stopped part-way on 2 ranks (FSDP2) continues on 1 and ends where
    a straight 1-process run ends, up to float rounding (the ranks add their gradients in another order)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    ranks = ["learner.num_workers=2", "cluster.num_cpus=3"]
    straight = train("pretrain", config(), tmp_path / "straight")
    run_dir = tmp_path / "stopped"
    try:
        stop_in_call(monkeypatch, LearnerGroup, "lm_step", 7, lambda: train("pretrain", config(*ranks), run_dir))
    finally:
        ray.shutdown()
    assert [r[0] for r in rows(run_dir, "pretrain")] == [2, 4, 6]
    resumed = train("pretrain", config("resume=true"), run_dir)
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=2e-3), name
    for (step, loss, lr), (step2, loss2, lr2) in zip(rows(tmp_path / "straight", "pretrain"), rows(run_dir, "pretrain"),
                                                    strict=True):
        assert (step, lr) == (step2, lr2)
        assert loss2 == pytest.approx(loss, rel=1e-3)
