"""RL against a reward model: the scores become the reward learned from (alone or mixed with the verifier's), the
verifier's result stays on each sample as the gold, sqrt(KL) from the SFT policy is measured, and a whole run
through the CLI trains a reward model in stage rm and logs proxy, gold and sqrt(KL) every step."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from rlpractice import model as policy
from rlpractice.config_checks import check
from rlpractice.errors import UserError
from rlpractice.grading.registry import Grade
from rlpractice.learner.device import place
from rlpractice.reward.model import load_reward_model, score_ids, score_shared
from rlpractice.reward.report import over_optimisation, plot_over_optimisation
from rlpractice.reward.rewards import ModelReward, check_reward
from rlpractice.rollout.batch import Batch, Group, Sample
from rlpractice.stages.reward_model import reward_model_stage
from rlpractice.textbook.problems import Problem
from rlpractice.tokenizer import train_tokenizer
from rlpractice.tracking import Tracker, read_metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny policy and a reward model started from it (random weights, shared tokenizer), as after SFT + rm."""
    tok = train_tokenizer(["Question: what is 2 + 3?\nAnswer: 5. The sum is five."] * 20, 300)
    path = tmp_path_factory.mktemp("run") / "checkpoints" / "sft"
    policy.save(policy.new_model(tok, 64, 2, 2, 128, 128, seed=0), tok, path)
    rm, _ = load_reward_model(path)
    place(rm, "cpu")
    model, tokenizer = policy.load(path)
    place(model, "cpu")
    return model, tokenizer, rm, path.parents[1]


def batch_of(tokenizer, rewards: list[list[float]]) -> Batch:
    groups = []
    for i, group in enumerate(rewards):
        prompt = tokenizer(f"Question: what is {i} + 3?\nAnswer:")["input_ids"]
        texts = [f" {i + j} is it." for j in range(len(group))]
        samples = [Sample(tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id], t, "stop",
                          grade=Grade(r, "ok")) for t, r in zip(texts, group, strict=True)]
        groups.append(Group(Problem(f"q{i}", str(i + 3)), prompt, samples))
    return Batch(groups)


def scorer(tiny, weights):
    model, tokenizer, rm, run_dir = tiny
    from rlpractice.learner.update import reference_model

    return ModelReward(rm, model, reference_model(model, run_dir), tokenizer.pad_token_id, weights, (64, 4096), True,
                       False)


@pytest.mark.parametrize("weights", [(1.0, 0.0), (0.5, 2.0)])
def test_scores_become_the_trained_reward_and_the_verifier_reward_stays_the_gold(tiny, weights):
    model, tokenizer, rm, _ = tiny
    batch = batch_of(tokenizer, [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    rewards = scorer(tiny, weights)(batch)
    metrics = rewards.metrics
    # the shared-prompt scorer gives each sample the score of its whole sequence
    direct = score_ids(rm, [g.prompt_ids + s.ids for g in batch.groups for s in g.samples], 4096)
    assert rewards.scores == pytest.approx(direct, abs=1e-5)
    expected = [weights[0] * d + weights[1] * s.reward for d, s in zip(direct, batch.samples, strict=True)]
    assert rewards.values.shape == (2, 3) and rewards.values.flatten().tolist() == pytest.approx(expected, abs=1e-5)
    assert batch.rewards().flatten().tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]  # the verifier's, untouched
    assert metrics["rlhf/gold"] == pytest.approx(0.5)
    assert metrics["rlhf/proxy"] == pytest.approx(sum(direct) / len(direct), abs=1e-5)
    assert metrics["time/reward_model"] > 0


def test_sqrt_kl_is_zero_at_the_sft_policy_and_grows_when_the_policy_moves(tiny):
    model, tokenizer, *_ = tiny
    score = scorer(tiny, (1.0, 0.0))
    batch = batch_of(tokenizer, [[1.0, 0.0], [0.0, 1.0]])
    assert score(batch).metrics["rlhf/sqrt_kl"] == pytest.approx(0.0, abs=1e-4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    try:
        moved = score(batch).metrics
        assert moved["rlhf/kl"] != 0.0 and moved["rlhf/sqrt_kl"] == pytest.approx(math.sqrt(max(moved["rlhf/kl"], 0)))
    finally:
        model.load_state_dict(policy.load(tiny[3] / "checkpoints" / "sft")[0].state_dict())


def test_shared_prompt_scores_equal_full_sequence_scores_across_micro_batches(tiny):
    rm = tiny[2]
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    owner = [0, 2, 1, 0, 2, 2, 1]
    comps = [[20 + i] * (1 + i % 4) for i in range(len(owner))]
    full = score_ids(rm, [prompts[o] + c for o, c in zip(owner, comps, strict=True)], 4096)
    assert score_shared(rm, prompts, owner, comps, 6) == pytest.approx(full, abs=1e-5)


def compose_cfg(*overrides, experiment="math"):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"+experiment={experiment}", *overrides])


def test_default_run_has_no_reward_model_and_rlhf_experiment_trains_one():
    assert compose_cfg().reward.model is None
    cfg = compose_cfg(experiment="rlhf")
    check(cfg)
    assert cfg.reward.model == "train" and cfg.reward.verifier_weight == 0


@pytest.mark.parametrize("override, words", [("reward.model=/nowhere", "not an HF folder"),
                                              ("algo=rft", "rft and algo.dynamic_sampling"),
                                              ("algo=dapo", "rft and algo.dynamic_sampling")])
def test_settings_a_reward_model_cannot_work_with_are_one_line(override, words):
    cfg = compose_cfg("reward.model=train", override)
    with pytest.raises(UserError, match=words):
        check_reward(cfg)


def test_summary_says_where_gold_peaked_and_how_far_it_fell(tmp_path):
    rows = [{"stage": "eval", "step": 0, "pass@1": 0.3}]
    for step, (proxy, gold, d) in enumerate([(0.1, 0.3, 0.5), (0.5, 0.5, 1.0), (0.9, 0.4, 1.5), (1.4, 0.2, 2.0)], 1):
        rows.append({"stage": "rl", "step": step, "rlhf/proxy": proxy, "rlhf/gold": gold, "rlhf/sqrt_kl": d})
        if step % 2 == 0:
            rows.append({"stage": "eval", "step": step, "pass@1": gold + 0.05})
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = over_optimisation(path)
    assert (out["rlhf_gold_peak_step"], out["rlhf_gold_peak_pass_at_1"]) == (2, pytest.approx(0.55))
    assert out["rlhf_gold_fall"] == pytest.approx(0.3)
    assert (out["rlhf_step_gold_peak_step"], out["rlhf_proxy_final"]) == (2, 1.4)
    assert plot_over_optimisation(path, tmp_path / "o.png").stat().st_size > 1000


def test_stage_rm_trains_from_the_sft_checkpoint_once_and_a_resumed_run_keeps_it(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    ckpt = tmp_path / "checkpoints"
    shutil.copytree(tiny[3] / "checkpoints" / "sft", ckpt / "sft")
    settings = ["reward.model=train", "rm.steps=2", "rm.batch_size=4", "rm.train_size=16", "rm.heldout_size=8",
                "learner.device=cpu", "tracker.mode=offline"]
    for resume in (False, True):
        cfg = compose_cfg(*settings, f"resume={str(resume).lower()}")
        tracker = Tracker(cfg, tmp_path)
        try:
            assert reward_model_stage(cfg, ckpt, tracker) == ckpt / "rm"
        finally:
            tracker.finish({})
    rm_rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["stage"] == "rm"]
    assert [r["step"] for r in rm_rows] == [2]  # trained once: the resumed run found checkpoints/rm/ done
    assert load_reward_model(ckpt / "rm")[0].config.num_labels == 1
    assert reward_model_stage(compose_cfg("reward.model=null"), ckpt, None) is None
    assert reward_model_stage(compose_cfg(f"reward.model={ckpt / 'sft'}"), ckpt, None) == ckpt / "sft"


@pytest.mark.slow
def test_rl_against_a_reward_model_trained_in_stage_rm_end_to_end(tiny_args, tmp_path):
    from conftest import run_cli

    run_dir = tmp_path / "run"
    args = [a.replace("+experiment=math", "+experiment=rlhf") for a in tiny_args]
    proc = run_cli([*args, "rl.steps=2", "rl.eval_every=1", "rm.steps=6", "rm.batch_size=8",
                    "rm.train_size=64", "rm.heldout_size=16", "rm.eval_every=3", "rm.checkpoint_every=3",
                    "tracker.tags=[rlhf]", f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_metrics(run_dir / "metrics.jsonl")
    rm = [r for r in rows if r["stage"] == "rm"]
    assert rm[-1]["step"] == 6 and 0 <= rm[-1]["heldout/accuracy"] <= 1
    rl = [r for r in rows if r["stage"] == "rl"]
    assert [r["step"] for r in rl] == [1, 2]
    for r in rl:
        assert r["rlhf/gold"] == r["pass_rate"] and r["rlhf/sqrt_kl"] >= 0 and math.isfinite(r["rlhf/proxy"])
        assert 0 < r["time/reward_model"] < r["time/step"]
    assert rl[0]["rlhf/sqrt_kl"] == pytest.approx(0.0, abs=1e-3)  # step 1 samples the SFT policy itself
    evals = [r for r in rows if r["stage"] == "eval"]
    assert [r["step"] for r in evals] == [0, 1, 2]  # every evaluation: the proxy beside held-out pass@1 (the gold)
    assert all(math.isfinite(r["rlhf/proxy"]) and 0 <= r["pass@1"] <= 1 for r in evals)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rlhf_gold_peak_step"] in (0, 1, 2) and "rlhf_gold_fall" in summary
    assert (run_dir / "over_optimisation.png").stat().st_size > 1000
    assert (run_dir / "checkpoints" / "rm" / "config.json").is_file()
    assert not (run_dir / "checkpoints" / "rm_steps").exists()
    assert "rm_score" in (run_dir / "rollouts.jsonl").read_text()
