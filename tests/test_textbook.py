from fractions import Fraction

from rlpractice.grading.mathparse import extract_answer, plain_number
from rlpractice.textbook.math_textbook import build_textbook, generate
from rlpractice.textbook.problems import is_heldout


def small_book(seed=0):
    return build_textbook(seed, exposition_paragraphs=200, worked=400, practice=400, heldout=200)


def test_deterministic_for_a_seed_and_different_across_seeds():
    a, b, c = small_book(0), small_book(0), small_book(1)
    assert a.worked == b.worked and a.practice == b.practice and a.heldout == b.heldout
    assert a.exposition == b.exposition
    assert a.worked != c.worked


def test_heldout_is_disjoint_from_all_training_text():
    book = small_book()
    held = {p.question for p in book.heldout}
    assert len(held) == 200
    assert not held & {p.question for p in book.worked + book.practice}
    text = "\n".join(book.exposition)
    assert not any(q in text for q in held)
    assert all(is_heldout(q) for q in held)
    # whatever the seed, training problems never land in the held-out bucket
    assert not any(is_heldout(p.question) for p in generate(123, 300, heldout=False))


def test_worked_solutions_end_in_their_answer_and_levels_are_balanced():
    book = small_book()
    for p in book.worked:
        assert extract_answer(p.solution) == p.answer
        assert p.solution.startswith(" ") and "Answer:" in p.solution
    levels = [p.level for p in book.worked]
    assert {lv: levels.count(lv) for lv in set(levels)} == {1: 100, 2: 100, 3: 100, 4: 100}


def test_answers_are_arithmetically_right():
    """Check every worked step 'a op b = c.' by exact arithmetic."""
    import re

    step = re.compile(r"(\d+(?:/\d+)?) ([-+*/]) (\d+(?:/\d+)?) = (\d+(?:/\d+)?)\.")
    for p in small_book().worked:
        steps = step.findall(p.solution)
        assert steps, p.solution
        for a, op, b, c in steps:
            x, y = Fraction(a), Fraction(b)
            value = {"+": x + y, "-": x - y, "*": x * y, "/": x / y}[op]
            assert value == Fraction(c), (p.question, p.solution)
        assert plain_number(p.answer) >= 0


def test_fraction_level_has_fraction_answers():
    fractions = [p.answer for p in small_book().worked if p.level == 4 and "/" in p.answer]
    assert len(fractions) > 30
    assert all(Fraction(a) == Fraction(a).limit_denominator() for a in fractions)


def test_answer_only_share_prints_some_solutions_as_the_answer_alone():
    full = build_textbook(0, 10, 400, 10, 10)
    mixed = build_textbook(0, 10, 400, 10, 10, answer_only_fraction=0.5)
    assert [p.question for p in full.worked] == [p.question for p in mixed.worked]
    terse = [p for p in mixed.worked if p.solution == f" Answer: {p.answer}"]
    assert 150 < len(terse) < 250
    assert all(extract_answer(p.solution) == p.answer for p in mixed.worked)
    assert mixed.practice == full.practice and mixed.heldout == full.heldout
