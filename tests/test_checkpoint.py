"""Resumable RL checkpoints: atomic, complete, retained, and restoring the exact training state."""

import json

import torch

from rlpractice.checkpoint import complete_checkpoints, latest_rl_state, load_rl_state, save_rl_state
from rlpractice.model import load, new_model
from rlpractice.stages.rl import PracticeOrder
from rlpractice.textbook.problems import Problem
from rlpractice.tokenizer import train_tokenizer


def tiny_policy():
    tok = train_tokenizer(["Question: 1 + 1?\nSolution: 1 + 1 = 2. Answer: 2"] * 20, 280)
    return new_model(tok, 32, 1, 1, 64, 64, seed=0), tok


def test_practice_order_continues_exactly_after_a_restore():
    problems = [Problem(f"q{i}", str(i)) for i in range(10)]
    straight = PracticeOrder(problems, seed=3)
    first = straight.take(7)
    state = json.loads(json.dumps(straight.state()))  # it goes through state.json
    resumed = PracticeOrder(problems, seed=999)
    resumed.restore(state)
    assert [p.question for p in resumed.take(25)] == [p.question for p in straight.take(25)]
    assert len({p.question for p in first}) == 7  # no repeats within one pass


def test_checkpoint_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    model, tok = tiny_policy()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    opt.step()
    root = tmp_path / "rl_steps"
    torch.manual_seed(7)
    path = save_rl_state(root, 3, model, tok, opt, {"order": {"x": 1}, "metrics": {"pass_rate": 0.5}}, keep=2)
    expected_draw = torch.rand(3)

    restored, _ = load(path)
    opt2 = torch.optim.AdamW(restored.parameters(), lr=1e-3)
    torch.manual_seed(0)
    state = load_rl_state(path, opt2)
    assert state == {"step": 3, "order": {"x": 1}, "metrics": {"pass_rate": 0.5}}
    assert torch.equal(torch.rand(3), expected_draw)
    for a, b in zip(model.parameters(), restored.parameters(), strict=True):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)


def test_retention_and_unfinished_checkpoints_are_ignored(tmp_path):
    model, tok = tiny_policy()
    opt = torch.optim.AdamW(model.parameters())
    root = tmp_path / "rl_steps"
    for step in (1, 2, 3, 4):
        save_rl_state(root, step, model, tok, opt, {}, keep=2)
    assert [p.name for p in complete_checkpoints(root)] == ["step_000003", "step_000004"]
    (root / "step_000009.tmp").mkdir()  # a crash while writing step 9 leaves only this
    (root / "step_000010").mkdir()  # not complete: no state.json
    assert latest_rl_state(root).name == "step_000004"
