"""The rm stage on a tiny Llama: it learns a separable preference, its saved folder loads with
AutoModelForSequenceClassification and scores the same, and a stopped stage resumes exactly."""

import random
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rlpractice import model as policy
from rlpractice.checkpoint import complete_checkpoints
from rlpractice.reward.model import load_reward_model, score, score_ids, sequence_ids
from rlpractice.stages import reward_model
from rlpractice.stages.reward_model import run_rm
from rlpractice.textbook.preferences import PreferencePair, load_pairs
from rlpractice.tokenizer import train_tokenizer
from rlpractice.tracking import read_metrics
from tests.stop_resume import assert_resumed_like_straight, stop_in_call, tracking

ROOT = Path(__file__).resolve().parents[1]
WORDS = "red blue green cat dog sun tree box cup hat pen map".split()
PROMPT = "Question: which list is better?\nSolution:"


def toy_pairs(n: int, seed: int) -> list[PreferencePair]:
    """Chosen lists contain the word 'star' somewhere; rejected ones are the same list with another word there
    (same length: only the word tells them apart)."""
    r = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = r.choices(WORDS, k=r.randint(3, 8))
        at = r.randrange(len(words) + 1)
        chosen = words[:at] + ["star"] + words[at:]
        rejected = words[:at] + [r.choice(WORDS)] + words[at:]
        pairs.append(PreferencePair(PROMPT, " " + " ".join(chosen), " " + " ".join(rejected)))
    return pairs


@pytest.fixture(scope="module")
def start(tmp_path_factory) -> Path:
    """A tiny causal Llama folder, as SFT leaves one (random weights: the toy needs no pretraining)."""
    tok = train_tokenizer([PROMPT] + [" ".join(WORDS + ["star"])] * 20, 300)
    path = tmp_path_factory.mktemp("start") / "sft"
    policy.save(policy.new_model(tok, 64, 2, 2, 128, 128, seed=0), tok, path)
    return path


def config(**rm):
    settings = {"steps": 40, "batch_size": 16, "lr": 1e-3, "warmup_steps": 2, "eval_every": 0, "log_every": 2,
                "checkpoint_every": 0, **rm}
    return OmegaConf.create({
        "seed": 0, "resume": False, "learner": {"device": "cpu", "bf16": False},
        "tracker": OmegaConf.load(ROOT / "conf" / "tracker" / "wandb.yaml"),
        "rm": OmegaConf.merge(OmegaConf.load(ROOT / "conf" / "rm" / "default.yaml"), settings),
    })


def train(cfg, start: Path, run_dir: Path):
    with tracking(cfg, run_dir) as tracker:
        return run_rm(cfg, start, toy_pairs(400, 1), toy_pairs(64, 2), tracker, run_dir / "steps")


def test_learns_a_separable_preference_and_saves_a_folder_that_loads_elsewhere(start, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    before = load_reward_model(start)[0]
    heldout = toy_pairs(64, 2)
    untrained = reward_model.evaluate_pairs(
        before, [reward_model.encode_pair(AutoTokenizer.from_pretrained(start), p, 0.0) for p in heldout], 4096)
    model, tokenizer, final = train(config(), start, tmp_path / "run")
    # an untrained head scores everything near 0 (loss log 2 = 0.69, whatever its accuracy: 'star' alone shifts
    # a random model's score one way or the other); trained, chosen wins clearly
    assert untrained["loss"] > 0.65 and final["loss"] < 0.3 and final["accuracy"] >= 0.95
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["stage"] == "rm"]
    assert rows[-1]["step"] == 40 and rows[-1]["heldout/accuracy"] == final["accuracy"]

    # saved as the pipeline saves it, loaded by plain transformers: the same scores, one unpadded row at a time
    folder = policy.save(model, tokenizer, tmp_path / "rm")
    other = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    other_tok = AutoTokenizer.from_pretrained(folder)
    prompts, completions = [p.prompt for p in heldout[:12]], [p.chosen for p in heldout[:12]]
    ours = score(model, tokenizer, prompts, completions, batch_tokens=128)  # several padded micro-batches
    with torch.no_grad():
        theirs = [other(torch.tensor([sequence_ids(other_tok, p, c)])).logits[0, 0].item()
                  for p, c in zip(prompts, completions, strict=True)]
    assert ours == pytest.approx(theirs, abs=1e-5)
    assert len(set(ours)) > 1


def test_score_ids_is_independent_of_batching(start):
    model, tok = load_reward_model(start)
    seqs = [sequence_ids(tok, p.prompt, p.rejected) for p in toy_pairs(30, 3)]
    one_by_one = [score_ids(model, [s], batch_tokens=1)[0] for s in seqs]
    assert score_ids(model, seqs, batch_tokens=100) == pytest.approx(one_by_one, abs=1e-5)
    assert score_ids(model, seqs, batch_tokens=10_000) == pytest.approx(one_by_one, abs=1e-5)


def test_stopped_and_resumed_stage_ends_bitwise_like_a_straight_run(start, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    every = {"steps": 12, "checkpoint_every": 4, "eval_every": 4}  # checkpoints after steps 4 and 8
    straight = train(config(**every), start, tmp_path / "straight")[0]
    assert [p.name for p in complete_checkpoints(tmp_path / "straight" / "steps")] == ["step_000004", "step_000008"]

    run_dir = tmp_path / "stopped"
    # inside step 7: step 6 was logged, the last checkpoint is step 4's
    stop_in_call(monkeypatch, reward_model, "preference_step", 7, lambda: train(config(**every), start, run_dir))
    resumed_cfg = config(**every)
    resumed_cfg.resume = True
    resumed = train(resumed_cfg, start, run_dir)[0]
    assert_resumed_like_straight(straight, resumed, tmp_path / "straight", run_dir, "rm", ("loss",), resumed_after=4)


def test_the_settings_file_composes_with_the_builtin_pairs():
    s = config().rm
    assert {"steps", "batch_size", "lr", "center_coef", "margin", "token_budget", "eval_every", "checkpoint_every",
            "keep_checkpoints", "pairs", "heldout_pairs"} <= set(s)
    s.train_size, s.heldout_size = 20, 5
    train_pairs, heldout = load_pairs(s, seed=0)
    assert (len(train_pairs), len(heldout)) == (20, 5) and s.pairs == "builtin"
