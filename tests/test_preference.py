"""The reward model's loss against values computed by hand, and the preference pairs: built-in ones graded by
the math verifier, bad records of your own named by file:line."""

import json
import math
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import OmegaConf

from rlpractice.algorithm.preference import bradley_terry_loss, centering_loss, pair_accuracy, preference_loss
from rlpractice.errors import UserError
from rlpractice.grading.registry import get_verifier
from rlpractice.textbook.math_textbook import TEMPLATES
from rlpractice.textbook.preferences import (
    KINDS,
    builtin_pairs,
    load_pair_file,
    load_pairs,
    slipped,
    teacher_pair,
    wrong_number,
)
from rlpractice.textbook.problems import ANSWER_MARK, format_prompt, is_heldout

ROOT = Path(__file__).resolve().parents[1]
math_verify = get_verifier("math").fn

# ---------------------------------------------------------------- the loss, by hand


def test_bradley_terry_by_hand():
    # -log sigmoid(2) = log(1 + e^-2) = 0.126928; -log sigmoid(0) = log 2 = 0.693147
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert loss.item() == pytest.approx((0.126928 + 0.693147) / 2, abs=1e-6)


def test_margin_shifts_the_difference():
    # differences 2 and 0 minus margin 1: -log sigmoid(1) = 0.313262, -log sigmoid(-1) = 1.313262
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]), margin=1.0)
    assert loss.item() == pytest.approx((0.313262 + 1.313262) / 2, abs=1e-6)
    per_pair = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]))
    assert per_pair.item() == pytest.approx((0.313262 + 0.693147) / 2, abs=1e-6)


def test_bradley_terry_gradient_by_hand():
    # d/dr_c of -log sigmoid(r_c - r_r) = -sigmoid(r_r - r_c); at equal scores -1/2, over 2 pairs -1/4
    r_c = torch.tensor([0.0, 1.0], requires_grad=True)
    r_r = torch.tensor([0.0, -1.0], requires_grad=True)
    bradley_terry_loss(r_c, r_r).backward()
    expected = -1 / (1 + math.exp(2)) / 2  # second pair: difference 2
    assert r_c.grad.tolist() == pytest.approx([-0.25, expected], abs=1e-6)
    assert r_r.grad.tolist() == pytest.approx([0.25, -expected], abs=1e-6)


def test_centering_by_hand():
    # pair sums 2 + 0 = 2 and 1 - 3 = -2: squares 4 and 4, mean 4, times 0.01
    r_c, r_r = torch.tensor([2.0, 1.0]), torch.tensor([0.0, -3.0])
    assert centering_loss(r_c, r_r, 0.01).item() == pytest.approx(0.04)
    # a shift of all scores changes the centring term but not Bradley-Terry
    assert bradley_terry_loss(r_c + 5, r_r + 5).item() == pytest.approx(bradley_terry_loss(r_c, r_r).item())
    assert preference_loss(r_c, r_r, center_coef=0.01).item() == pytest.approx(
        bradley_terry_loss(r_c, r_r).item() + 0.04)


def test_pair_accuracy_counts_ties_as_misses():
    assert pair_accuracy(torch.tensor([2.0, 0.0, 1.0]), torch.tensor([0.0, 0.0, 3.0])) == pytest.approx(1 / 3)


# ---------------------------------------------------------------- built-in pairs


def final_answer(completion: str) -> str:
    return completion.rsplit(ANSWER_MARK, 1)[1].strip()


def test_builtin_chosen_grades_correct_and_rejected_wrong_with_the_math_verifier():
    pairs = builtin_pairs(0, 400, heldout=False) + builtin_pairs(0, 100, heldout=True)
    assert {p.kind for p in pairs} == set(KINDS)
    for p in pairs:
        gold = final_answer(p.chosen)
        assert p.prompt.startswith("Question: ") and p.prompt.endswith("\nSolution:")
        assert p.chosen.startswith(" ") and p.rejected.startswith(" ")  # they follow "Solution:"
        assert math_verify(p.chosen, gold).reward == 1.0, p
        assert math_verify(p.rejected, gold).reward == 0.0, p


def test_builtin_heldout_pairs_use_only_heldout_questions():
    train, heldout = builtin_pairs(1, 200, heldout=False), builtin_pairs(1, 50, heldout=True)
    question = lambda p: p.prompt.removeprefix("Question: ").removesuffix("\nSolution:")  # noqa: E731
    assert all(is_heldout(question(p)) for p in heldout)
    assert not any(is_heldout(question(p)) for p in train)
    assert len({p.prompt for p in train}) == 200
    assert builtin_pairs(1, 50, heldout=True) == heldout  # seeded


def test_slip_is_carried_through_later_steps():
    # 3 * 4 = 12 -> a slip there must reach the sum, and every later step must be right given the slip
    steps = ["3 * 4 = 12.", "2 * 5 = 10.", "12 + 10 = 22."]
    for seed in range(50):
        out = slipped(steps, "22", random.Random(seed))
        assert len(out) == 3 and out != steps
        wrong = [s for s, t in zip(out, steps, strict=True) if s != t]
        for s in out[out.index(wrong[0]) + 1:]:  # after the first slip, every step is consistent arithmetic
            lhs, rhs = s.rstrip(".").split(" = ")
            assert eval(lhs) == int(rhs), out  # noqa: S307 - test-only, the textbook's own digits
        assert out[-1].split(" = ")[1] != "22."


def test_rejected_kinds_look_like_a_students_mistakes():
    r = random.Random(0)
    q, steps, answer = "Anna has 5 boxes with 6 cards in each. How many cards is that?", ["5 * 6 = 30."], "30"
    assert teacher_pair(q, steps, answer, r, "bare_guess").rejected.startswith(f" {ANSWER_MARK} ")
    wrong = teacher_pair(q, steps, answer, r, "wrong_answer")
    assert wrong.rejected.startswith(" 5 * 6 = 30. Answer: ") and wrong.prompt == format_prompt(q)
    assert wrong_number("3/4", r).endswith("/4")
    assert all(wrong_number("2/4", random.Random(s)) not in ("1/2", "2/4", "0/4") for s in range(100))
    for level in (1, 2, 3, 4):  # every template's slip is well formed
        q, steps, answer = TEMPLATES[level](random.Random(level))
        assert teacher_pair(q, steps, answer, r, "slip").rejected.count(ANSWER_MARK) == 1


# ---------------------------------------------------------------- your own pairs


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


GOOD = {"prompt": "Q: 2+2?", "chosen": " 4", "rejected": " 5"}


@pytest.mark.parametrize("record,reason", [
    ('{"prompt": "Q", "chosen": "a"', r"not valid JSON"),
    ({"prompt": "Q", "chosen": " 4"}, r"no key 'rejected'"),
    ({"chosen": [{"role": "assistant", "content": "4"}], "rejected": " 5"}, r"list of messages"),
    ({"prompt": "Q", "chosen": " 4", "rejected": " 4"}, r"same text"),
    ({"prompt": 3, "chosen": " 4", "rejected": " 5"}, r"'prompt' is a int"),
    ({"prompt": "Q", "chosen": " 4", "rejected": " 5", "margin": "big"}, r"'margin' is 'big'"),
    ({"prompt": "Q", "chosen": "  ", "rejected": " 5"}, r"empty"),
])
def test_bad_record_is_named_by_file_and_line(tmp_path, record, reason):
    path = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, GOOD, record, GOOD])
    with pytest.raises(UserError, match=rf"prefs\.jsonl:3: .*{reason}.*rm\.skip_bad=true"):
        load_pair_file(path)
    pairs, bad = load_pair_file(path, skip_bad=True)
    assert len(pairs) == 3 and [b.where for b in bad] == [f"{path}:3"]


def test_pairs_from_jsonl_and_parquet(tmp_path):
    records = [GOOD, {"chosen": "Q: 1+1? 2", "rejected": "Q: 1+1? 3", "margin": 2}]
    jsonl = write_jsonl(tmp_path / "p.jsonl", records)
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([{**GOOD, "margin": None}, {**records[1], "prompt": ""}]), parquet)
    for path in (jsonl, parquet):
        pairs, _ = load_pair_file(path)
        assert [(p.prompt, p.chosen, p.rejected, p.margin) for p in pairs] == [
            ("Q: 2+2?", " 4", " 5", None), ("", "Q: 1+1? 2", "Q: 1+1? 3", 2.0)]
    assert pairs[1].source == f"{parquet}:row 2"


def test_missing_file_names_the_setting(tmp_path):
    with pytest.raises(UserError, match=r"rm\.pairs='.*nope\.jsonl' does not exist"):
        load_pair_file(tmp_path / "nope.jsonl")


def rm_settings(**overrides):
    s = OmegaConf.load(ROOT / "conf" / "rm" / "default.yaml")
    s.update(overrides)
    return s


def test_load_pairs_builtin_and_from_a_file(tmp_path):
    train, heldout = load_pairs(rm_settings(train_size=40, heldout_size=8), seed=0)
    assert (len(train), len(heldout)) == (40, 8)
    path = write_jsonl(tmp_path / "p.jsonl", [{**GOOD, "chosen": f" {i}", "rejected": " x"} for i in range(10)])
    train, heldout = load_pairs(rm_settings(pairs=str(path), heldout_size=3), seed=0)
    assert (len(train), len(heldout)) == (7, 3)
    assert {p.chosen for p in train} | {p.chosen for p in heldout} == {f" {i}" for i in range(10)}
    with pytest.raises(UserError, match=r"rm\.heldout_size=10 leaves no training pairs"):
        load_pairs(rm_settings(pairs=str(path), heldout_size=10), seed=0)
