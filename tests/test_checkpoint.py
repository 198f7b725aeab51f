"""Resumable RL checkpoints: atomic, complete, retained, and restoring the exact training state."""

import json

import pytest
import torch

from rlpractice.checkpoint import complete_checkpoints, latest_state, load_state, save_state
from rlpractice.learner.local import LocalLearner
from rlpractice.model import load, new_model
from rlpractice.stages.practice import PracticeOrder
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


def learner(model, optimizer) -> LocalLearner:
    out = LocalLearner(model)
    out.optimizer = optimizer
    return out


def test_checkpoint_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    model, tok = tiny_policy()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    opt.step()
    root = tmp_path / "rl_steps"
    torch.manual_seed(7)
    path = save_state(root, 3, learner(model, opt), tok, {"order": {"x": 1}, "metrics": {"pass_rate": 0.5}}, keep=2)
    expected_draw = torch.rand(3)

    restored, _ = load(path)
    opt2 = torch.optim.AdamW(restored.parameters(), lr=1e-3)
    torch.manual_seed(0)
    state = load_state(path, learner(restored, opt2))
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
        save_state(root, step, learner(model, opt), tok, {}, keep=2)
    assert [p.name for p in complete_checkpoints(root)] == ["step_000003", "step_000004"]
    (root / "step_000009.tmp").mkdir()  # a crash while writing step 9 leaves only this
    (root / "step_000010").mkdir()  # not complete: no state.json
    assert latest_state(root).name == "step_000004"


def test_curriculum_prefers_problems_neither_solved_nor_hopeless():
    problems = [Problem(f"q{i}", "1") for i in range(30)]
    order = PracticeOrder(problems, seed=0, curriculum=True)
    for p in problems[:10]:
        order.record(p, [1.0] * 64)  # always solved
    for p in problems[10:20]:
        order.record(p, [0.0] * 64)  # never solved
    for p in problems[20:]:
        order.record(p, [1.0, 0.0] * 32)  # half: the most informative
    assert order.weight(problems[25]) == pytest.approx(0.25, abs=0.01)
    drawn = [p.question for _ in range(50) for p in order.take(5)]
    informative = sum(int(q[1:]) >= 20 for q in drawn)
    assert informative / len(drawn) > 0.8  # 10 of 30 problems, drawn > 80% of the time
    assert len(set(order.take(30))) == 30  # without replacement within a draw
    resumed = PracticeOrder(problems, seed=5, curriculum=True)
    resumed.restore(json.loads(json.dumps(order.state())))
    assert [p.question for p in resumed.take(7)] == [p.question for p in order.take(7)]


def test_a_damaged_newest_checkpoint_is_skipped_with_one_line(tmp_path, capsys):
    """The newest checkpoint's weights cut short (as a full disk leaves them): resume takes the step before."""
    model, tok = tiny_policy()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    root = tmp_path / "rl_steps"
    older = save_state(root, 1, learner(model, opt), tok, {"order": {}}, keep=2)
    newest = save_state(root, 2, learner(model, opt), tok, {"order": {}}, keep=2)
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert latest_state(root) == older
    out = capsys.readouterr().out
    assert "skipping the damaged checkpoint" in out and "step_000002" in out and "cut short" in out
    load(latest_state(root))  # and the one it picked really loads


def test_only_damaged_checkpoints_name_their_files_and_what_to_do(tmp_path):
    from rlpractice.errors import UserError

    model, tok = tiny_policy()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    root = tmp_path / "sft_steps"
    path = save_state(root, 5, learner(model, opt), tok, {}, keep=2)
    (path / "trainer_state.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match=r"no intact checkpoint to resume from .*step_000005.*trainer_state|BadZip"):
        latest_state(root)
