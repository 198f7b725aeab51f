import os
from collections import Counter

import pytest

from rlpractice.errors import UserError
from rlpractice.grading.mathparse import extract_answer
from rlpractice.grading.pool import GradingPool
from rlpractice.grading.registry import Grade, get_verifier
from rlpractice.textbook.countdown_textbook import build_textbook, generate
from rlpractice.textbook.problems import format_solution, is_heldout

countdown = get_verifier("countdown").fn
COLUMNS = {"numbers": [3, 5, 7], "target": 22}


def small_book(seed=0):
    return build_textbook(seed, exposition_paragraphs=300, worked=300, practice=300, heldout=150,
                          answer_only_fraction=0.3)


def test_deterministic_for_a_seed_and_different_across_seeds():
    a, b, c = small_book(0), small_book(0), small_book(1)
    assert a.worked == b.worked and a.practice == b.practice and a.heldout == b.heldout
    assert a.exposition == b.exposition
    assert [p.columns for p in a.worked] == [p.columns for p in b.worked]
    assert a.worked != c.worked


def test_heldout_is_disjoint_from_all_training_text():
    book = small_book()
    held = {p.question for p in book.heldout}
    assert len(held) == 150 and all(is_heldout(q) for q in held)
    assert not held & {p.question for p in book.worked + book.practice}
    text = "\n".join(book.exposition)
    assert not any(q in text for q in held)
    # the puzzle itself (numbers and target), not just its wording, stays out of training
    puzzle = lambda p: (tuple(p.columns["numbers"]), p.columns["target"])  # noqa: E731
    assert not {puzzle(p) for p in book.heldout} & {puzzle(p) for p in book.worked + book.practice}
    for p in book.heldout:  # the exposition's own examples ("With 3, 5, 7 you can make 22: ...") too
        nums = ", ".join(map(str, p.columns["numbers"]))
        assert f"With {nums} you can make {p.answer}:" not in text
        assert f"To make {p.answer} from {nums}," not in text
    assert not any(is_heldout(p.question) for p in generate(123, 300, heldout=False))


def test_problems_are_consistent_and_levels_balanced():
    book = small_book()
    for p in book.worked + book.practice + book.heldout:
        nums, target = p.columns["numbers"], p.columns["target"]
        assert p.answer == str(target) and len(nums) == p.level + 1 and nums == sorted(nums)
        assert p.question == f"Use the numbers {', '.join(map(str, nums))} once each with + - * / to make {target}."
        assert all(1 <= n <= (50 if p.level == 1 else 20) for n in nums) and 1 <= target <= 100
    assert Counter(p.level for p in book.practice) == {1: 100, 2: 100, 3: 100}


def test_every_worked_solution_is_graded_correct_and_its_steps_are_right():
    book = small_book()
    answer_only = 0
    for p in book.worked:
        g = countdown(p.solution, p.answer, **p.columns)
        assert g.reward == 1.0, (p, g)
        assert p.solution.startswith(" ") and extract_answer(p.solution)
        steps = p.solution.split("Answer:")[0].split(".")[:-1]
        answer_only += not steps
        for step in steps:  # "a op b = c" by exact arithmetic, every result a whole number 1..100
            lhs, rhs = step.split("=")
            value = countdown(f"Answer: {lhs}", "", numbers=[int(t) for t in lhs.split()[::2]], target=int(rhs))
            assert value.reward == 1.0 and 1 <= int(rhs) <= 100, (p, step, value)
    assert 0.2 * len(book.worked) < answer_only < 0.4 * len(book.worked)


def test_builds_the_sizes_asked_for():  # its speed: scripts/bench_countdown.py
    book = build_textbook(0, exposition_paragraphs=2000, worked=2000, practice=2000, heldout=256)
    assert (len(book.worked), len(book.practice), len(book.heldout)) == (2000, 2000, 256)
    assert len(book.exposition) >= 2000


def test_bad_levels_are_a_user_error():
    with pytest.raises(UserError, match="textbook.levels"):
        build_textbook(0, 10, 10, 10, 10, levels=(1, 4))


@pytest.mark.parametrize("answer", ["5*3+7", " 5 * 3 + 7. ", "(5*3)+7", "7+3*5", "((7))+(3*5)", "\\boxed{3*5+7}"])
def test_accepts_any_expression_using_each_number_once(answer):
    g = countdown(f"5 * 3 = 15. Answer: {answer}", "22", **COLUMNS)
    assert g == Grade(1.0, "uses 3, 5, 7 once each and makes 22")


def test_exact_fractions_in_between_are_fine():
    assert countdown("Answer: 8/(3-8/3)", "24", numbers=[3, 3, 8, 8], target=24).reward == 1.0
    assert countdown("Answer: 8/3", "2", numbers=[3, 8], target=2).reason == "makes 8/3, not 2"


@pytest.mark.parametrize("completion,reason", [
    ("Answer: 5*3+6", "uses 6, which is not one of the numbers"),
    ("Answer: 5*3+5", "uses 5 twice, not once"),
    ("Answer: 5*3", "does not use 7"),
    ("Answer: 5*(3+7)", "makes 50, not 22"),
    ("Answer: 7/(5-5)+3", "divides by zero"),
    ("The answer is 22", "uses 22, which is not one of the numbers"),  # the bare target is no solution
    ("Answer: 7*3-5*5/5+6", "uses 5 3 times, not once"),  # the right value from the wrong numbers
    ("I think 5*3+7 works", "no final answer"),
    ("Answer: ", "no final answer"),
    ("Answer: __import__('os').system('true')", "unexpected character '_'"),
    ("Answer: 5*3+7 or eval('1')", "unexpected character 'o'"),
    ("Answer: -3+5*7", "unexpected '-'"),
    ("Answer: 5**3+7", "unexpected '*'"),
    ("Answer: 5*3+7=22", "unexpected character '='"),
    ("Answer: \u0663+5*7", "unexpected character"),  # an Arabic-Indic 3: int() would read it
    ("Answer: (5*3+7", "a '(' is not closed"),
    ("Answer: 5*3+7)", "unexpected ')'"),
    ("Answer: 5*3+", "answer ends too early"),
    ("Answer: " + "9" * 101, "answer is longer than 100 characters"),
    ("Answer: " + "(" * 11 + "3" + ")" * 11 + "+5+7", "brackets nested deeper than 10"),
])
def test_rejects_with_a_reason(completion, reason):
    g = countdown(completion, "22", **COLUMNS)
    assert g.reward == 0.0 and g.reason.startswith(reason), g


@pytest.mark.parametrize("text, reason", [
    ("(" * 10**6, "no final answer"),
    ("9*" * 10**6 + "9", "no final answer"),
    ("Answer: " + "9" * 10**6, "answer is longer than 100 characters"),  # refused before it is parsed
    ("Answer: " + "(" * 10**6, "answer is longer than 100 characters"),
    ("Answer: " + "(" * 99, "brackets nested deeper than 10"),  # the parser's recursion is bounded
    ("Answer: " + "9*" * 49 + "9", "uses 9, which is not one of the numbers"),
])
def test_huge_inputs_stop_at_a_bound_with_its_reason(text, reason):
    """The verifier runs in the trainer process without a timeout: its work must stop at a fixed bound
    whatever the input's size (the time it takes: scripts/bench_countdown.py)."""
    assert countdown(text, "22", **COLUMNS) == Grade(0.0, reason)


def test_needs_its_columns():
    for cols in ({}, {"numbers": [3, 5, 7]}, {"target": 22}):
        g = countdown("Answer: 5*3+7", "22", **cols)
        assert g == Grade(0.0, "countdown needs the dataset columns numbers and target")


def test_grades_through_the_pool_in_process():
    book = small_book()
    problems = book.heldout[:20]
    with GradingPool("countdown", num_workers=1) as pool:
        assert pool.verifiers["countdown"].fast is not None  # decided in the trainer, no worker round trip
        pid = os.getpid()
        grades = pool.grade([format_solution([], "5*3+7"), "Answer: 5*3+5"], ["22", "22"], [COLUMNS, COLUMNS])
        assert [g.reward for g in grades] == [1.0, 0.0] and grades[1].reason == "uses 5 twice, not once"
        solved = pool.grade([p.solution for p in book.worked[:20]],
                            [p.answer for p in book.worked[:20]], [p.columns for p in book.worked[:20]])
        assert all(g.reward == 1.0 for g in solved)
        bare = pool.grade(["Answer: " + p.answer for p in problems], [p.answer for p in problems],
                          [p.columns for p in problems])
        assert all(g.reward == 0.0 for g in bare)  # the target alone uses no numbers
        assert os.getpid() == pid
