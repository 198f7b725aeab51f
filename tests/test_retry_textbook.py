"""The textbook teaches check and retry: wrong first attempts, the check's words, corrected solutions, and SFT ids
laid out as a retry episode's rollout lays them out (no Ray, no vLLM)."""

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from rlpractice.verifiers.math import math_equal

from rlpractice.environments.loop import encode_result
from rlpractice.environments.retry import feedback, first_mistake, observation
from rlpractice.grading.extract import plain_number
from rlpractice.stages.sft import worked_sequence
from rlpractice.textbook import countdown_textbook
from rlpractice.textbook.math_textbook import build_textbook
from rlpractice.textbook.problems import Problem, format_solution
from rlpractice.textbook.retry_textbook import check_text, with_retries
from rlpractice.textbook.sources import load_book
from rlpractice.tokenizer import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SHARE = 0.3


@pytest.fixture(scope="module")
def book():
    return build_textbook(0, 300, 600, 10, 10, answer_only_fraction=0.5)


@pytest.fixture(scope="module")
def retried(book):
    return with_retries(book, SHARE, 0)


@pytest.fixture(scope="module")
def tokenizer(book):
    return train_tokenizer(book.exposition, 400)


def examples(book):
    return [p for p in book.worked if p.first_attempt]


def test_first_attempts_are_graded_wrong_and_corrected_solutions_right_and_show_their_steps(retried):
    ex = examples(retried)
    assert abs(len(ex) / (len(retried.worked) - len(ex)) - SHARE) < 0.05  # added after the worked problems
    for p in ex:
        assert math_equal(p.first_attempt, p.answer).reward == 0.0, p
        assert math_equal(p.solution, p.answer).reward == 1.0, p
        assert p.solution == format_solution(list(p.steps), p.answer) and " = " in p.solution  # never a leap
    leaps = [p for p in ex if p.first_attempt.startswith(" Answer:")]
    assert 0.15 < len(leaps) / len(ex) < 0.35  # the rest are slips and misreads in shown steps (KIND_WEIGHTS)
    assert {p.level for p in ex} == {1, 2, 3, 4}
    assert any("/" in p.answer for p in ex)  # fractions too, wrong in value (the verifier said so above)


def test_misread_attempts_work_a_number_the_question_does_not_hold_and_the_check_says_so(retried):
    misreads = [p for p in examples(retried) if "is not in the question" in check_text(p)]
    assert len(misreads) > 0.05 * len(examples(retried))
    for p in misreads:
        number = check_text(p).split("; ")[1].split()[0]
        assert number not in re.findall(r"\d+", p.question), p
        assert first_mistake(p.first_attempt, "") is None, p  # every step computed right, from a misread number


def test_the_check_never_gives_the_gold_answer_away(retried):
    for p in examples(retried):
        text = check_text(p)
        assert text == observation(feedback(math_equal(p.first_attempt, p.answer).reason, p.answer, p.first_attempt,
                                            p.question))
        assert text.startswith("\nCheck: ") and text.endswith("Try again.\nSolution:")
        numbers = re.findall(r"-?\d+(?:[./]\d+)?", text)
        assert plain_number(p.answer) not in {plain_number(n) for n in numbers}, text


def test_normal_worked_problems_and_other_parts_are_unchanged(book, retried, tokenizer):
    assert retried.worked[: len(book.worked)] == book.worked  # every problem still taught directly, in order
    assert {p.question for p in examples(retried)} <= {p.question for p in book.worked}
    for after in book.worked:
        if not after.first_attempt:
            seq = worked_sequence(after, tokenizer)
            prompt = tokenizer(after.prompt)["input_ids"]
            solution = tokenizer(after.solution)["input_ids"] + [tokenizer.eos_token_id]
            assert seq.ids == prompt + solution and seq.loss_mask == [0] * len(prompt) + [1] * len(solution)
    assert (retried.exposition, retried.practice, retried.heldout) == (book.exposition, book.practice, book.heldout)
    assert with_retries(book, 0.0, 0).worked == book.worked
    assert with_retries(book, SHARE, 0).worked == retried.worked  # seeded


def test_sft_sequence_is_the_episode_as_the_rollout_builds_it_and_learns_only_the_solution(retried, tokenizer):
    eos = tokenizer.eos_token_id
    hand = Problem("Li Lei has 3 packs with 9 oranges in each. How many oranges is that?", "27",
                   solution=" 3 * 9 = 27. Answer: 27", first_attempt=" Answer: 23")
    assert check_text(hand) == "\nCheck: 23 != the answer. Try again.\nSolution:"
    for p in [hand, *examples(retried)[:50]]:
        seq = worked_sequence(p, tokenizer)
        reason = math_equal(p.first_attempt, p.answer).reason
        unlearned = (tokenizer(p.prompt)["input_ids"] + tokenizer(p.first_attempt)["input_ids"] + [eos]
                     + encode_result(tokenizer, observation(feedback(reason, p.answer, p.first_attempt, p.question))))
        solution = tokenizer(p.solution)["input_ids"] + [eos]
        assert seq.ids == unlearned + solution
        assert seq.loss_mask == [0] * len(unlearned) + [1] * len(solution)
        assert tokenizer.decode(seq.ids) == (p.prompt + p.first_attempt + tokenizer.eos_token + check_text(p)
                                             + p.solution + tokenizer.eos_token)


def test_only_problems_with_steps_become_retries():
    book = countdown_textbook.build_textbook(0, 10, 60, 4, 4)  # its answers are expressions: no math-verifier check
    assert with_retries(book, 1.0, 0).worked == book.worked


def test_the_retry_experiment_builds_the_book_with_retries_and_the_default_without():
    small = ["textbook.exposition_paragraphs=50", "textbook.worked=200", "textbook.practice=10",
             "textbook.heldout=10"]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        retry = compose("config", overrides=["+experiment=math_retry", *small])
        plain = compose("config", overrides=["+experiment=math", *small])
    assert retry.env.name == "retry" and retry.tracker.tags == ["math", "retry"]
    share = retry.env.textbook_retries
    assert share > 0 and abs(len(examples(load_book(retry))) / 200 - share) < 0.1
    assert not examples(load_book(plain))
