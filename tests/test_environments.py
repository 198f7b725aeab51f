"""The environment interface's pure parts: episode rewards, check and retry's steps and feedback, starting episodes,
and the metrics that compare retrying with sampling again (the engine loop itself: test_environment_rollout.py)."""

import pytest

from rlpractice.environments.base import Step, check_step, episode_reward
from rlpractice.environments.loop import Episode, start_episodes
from rlpractice.environments.metrics import episode_metrics
from rlpractice.environments.retry import GENERIC, CheckAndRetry, feedback, first_mistake, observation
from rlpractice.evaluation import retry_metrics
from rlpractice.grading.registry import Grade
from rlpractice.rollout.batch import Group, Sample
from rlpractice.textbook.problems import Problem


def test_episode_reward_sums_turn_rewards_with_the_discount():
    assert episode_reward([0.0, 1.0]) == 1.0
    assert episode_reward([0.0, 1.0], 0.5) == 0.5
    assert episode_reward([1.0], 0.5) == 1.0
    assert episode_reward([None, 0.25, 1.0], 0.5) == pytest.approx(0.5 * 0.25 + 0.25 * 1.0)
    assert episode_reward([]) == 0.0


@pytest.mark.parametrize(("reason", "answer", "said"), [
    ("8 != 7", "7", "8 != the answer"),
    ("15 != 5", "5", "15 != the answer"),  # '5' inside '15' is not the gold
    ("no final answer found", "3", "no final answer found"),
    ("3/4 != 1/2: values 0.75 vs 0.5", "1/2", GENERIC),  # the gold's value in another form
    ("timeout: verifier took longer than 5s", "2", GENERIC),
])
def test_feedback_is_the_verifiers_reason_without_the_gold_answer(reason, answer, said):
    assert feedback(reason, answer) == said


@pytest.mark.parametrize(("attempt", "answer", "said"), [
    (" 4 * 4 = 16. 26 - 16 = 16. Answer: 16", "10", "16 != the answer; 26 - 16 = 16 is wrong"),  # the first false
    (" 3/8 + 2/8 = 5/8. 8 / 4 = 3. Answer: 3", "5", "3 != the answer; 8 / 4 = 3 is wrong"),  # 5/8 holds
    (" 1/5 = 2/15. 2/15 + 5/15 = 7/15. Answer: 7/15", "8/15", "7/15 != the answer; 1/5 = 2/15 is wrong"),
    (" 6 / 2 = 5. Answer: 5", "2", "5 != the answer"),  # the step holds the gold's value: left out
    (" Answer: 5", "2", "5 != the answer"),  # a leap: no step to mark
])
def test_feedback_marks_the_first_false_step_when_it_gives_nothing_away(attempt, answer, said):
    assert feedback(f"{attempt.split()[-1]} != {answer}", answer, attempt) == said


@pytest.mark.parametrize(("attempt", "question", "mark"), [
    (" 2 * 6 = 12. 3 * 2 = 6. Answer: 18", "2 pears at 5 yuan and 3 books at 2 yuan", "6 is not in the question"),
    (" 1/5 = 3/15. 3/15 + 4/15 = 7/15. Answer: 7/15", "drinks 1/5 of it and then 5/15", "4/15 is not in the question"),
    (" 1 = 7/7. 7/7 - 5/7 = 2/7. Answer: 2/7", "uses 5/7 of it", None),  # 1 and earlier results are known
    (" 40 / 5 = 8. 8 * 2 = 16. Answer: 16", "has 40 cards and gives away 2/5 of them", None),  # 2/5 gives 2 and 5
    (" 16 / 3 = 8. Answer: 8", "has 16 and 4", "3 is not in the question"),  # read before computed
    (" 16 / 4 = 5. Answer: 5", "has 16 and 4", "16 / 4 = 5 is wrong"),
    (" 16 / 3 = 8. Answer: 8", "", "16 / 3 = 8 is wrong"),  # no question: steps only
])
def test_first_mistake_is_a_number_the_question_never_gave_or_a_false_step(attempt, question, mark):
    assert first_mistake(attempt, question) == mark


def grade_math(text: str, answer: str, columns: dict) -> Grade:
    """The math verifier's own function (verifiers/math.py), as the grading pool calls it."""
    from rlpractice.verifiers.math import math_equal

    return math_equal(text, answer, **columns)


def test_check_and_retry_answers_a_wrong_attempt_and_stops_at_the_right_one_or_the_last():
    env = CheckAndRetry(grade_math, max_attempts=3)
    assert env.reset(Problem("Tom has 3 apples and gets 4 more. How many apples does Tom have now?", "7")) is None
    wrong = env.step(" 3 + 4 = 8. Answer: 8")
    assert wrong.observation == observation("8 != the answer; 3 + 4 = 8 is wrong")
    assert not wrong.done and wrong.reward == 0.0
    assert "7" not in wrong.observation
    right = env.step(" 3 + 4 = 7. Answer: 7")
    assert right.done and right.reward == 1.0 and right.observation == ""
    env = CheckAndRetry(grade_math, max_attempts=2)
    env.reset(Problem("q", "7"))
    env.step("Answer: 1")
    last = env.step("Answer: 2")
    assert last.done and last.reward == 0.0  # out of attempts: no more feedback


def test_repeating_an_answer_marked_wrong_costs_the_repeat_penalty():
    env = CheckAndRetry(grade_math, max_attempts=4, repeat_penalty=0.5)
    env.reset(Problem("q", "7"))
    assert env.step(" 3 + 4 = 8. Answer: 8").reward == 0.0  # a first mistake is only wrong
    repeat = env.step(" 3 + 4 = 8. Answer: 8")
    assert repeat.reward == -0.5 and repeat.info["repeated"] == 1 and not repeat.done
    assert env.step("Answer: 9").reward == 0.0  # wrong, but a new answer
    assert env.step("Answer: 7").reward == 1.0  # right after all: no penalty, whatever came before
    env.reset(Problem("q", "7"))  # a new episode forgets the old one's answers
    assert env.step("Answer: 9").reward == 0.0
    env = CheckAndRetry(grade_math, max_attempts=3)  # off unless asked
    env.reset(Problem("q", "7"))
    assert [env.step("Answer: 8").reward for _ in range(2)] == [0.0, 0.0]


def test_check_step_names_what_a_malformed_step_returned():
    assert check_step(Step("x", 1, True)).reward == 1
    for bad, words in [((None, 1.0, True), "returned a tuple"), (Step(3), "observation of type int"),
                       (Step("", "1"), "reward of type str"), (Step("", True), "reward of type bool")]:
        with pytest.raises(ValueError, match=words):
            check_step(bad)


class Tok:
    """Character ids: enough for `start_episodes`, which only encodes prompts."""

    eos_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text]


class Prompted:
    stop_strings, gives_reward = (), True

    def __init__(self, text):
        self.text = text

    def reset(self, problem):
        if self.text == "raise":
            raise KeyError("no such level")
        return self.text

    def step(self, turn):
        return Step(done=True)


def test_start_episodes_shares_one_prompt_per_problem_and_ends_broken_resets_with_a_reason():
    problems = [Problem("a", "1"), Problem("b", "2")]
    texts = iter(["P1", "P1", None, "raise"])
    prompt_ids, episodes = start_episodes(problems, [2, 2], lambda: Prompted(next(texts)), Tok())
    assert prompt_ids == [Tok().encode("P1"), Tok().encode(problems[1].prompt)]  # None: the problem's own prompt
    assert [e.finish for e in episodes] == [None, None, None, "stop"]
    broken = episodes[3]
    assert broken.failure == "error: environment reset() raised KeyError: 'no such level'"
    assert broken.grade(1.0) == Grade(0.0, broken.failure) and broken.ids == [0] and broken.observation_mask == [1]
    texts = iter(["same", "other"])
    _, episodes = start_episodes(problems[:1], [2], lambda: Prompted(next(texts)), Tok())
    assert "another first observation" in episodes[1].failure


def test_an_episode_grade_is_its_environments_discounted_reward_or_the_verifiers():
    e = Episode(0, Prompted(None), turn_rewards=[0.0, 1.0], finish="stop", info={"reason": "7 equals 7"})
    assert e.grade(0.5) == Grade(0.5, "7 equals 7")
    e.finish = "length"
    e.turn_rewards = []
    assert e.grade(0.5).reason == "cut at max_new_tokens before the environment's verdict"
    tools = Prompted(None)
    tools.gives_reward = False
    assert Episode(0, tools, finish="stop").grade(1.0) is None  # the verifier grades its text


def episode(turn_rewards, turns=None, obs=0) -> Sample:
    s = Sample([1] * (3 + obs), "", "stop", observation_mask=[0] * 3 + [1] * obs, turns=turns or len(turn_rewards),
               turn_rewards=turn_rewards)
    s.grade = Grade(episode_reward(turn_rewards, 0.5), "")
    return s


def test_episode_metrics_count_turns_observations_and_recoveries():
    cut = episode([0.0])
    cut.finish = "length"  # a failed first attempt, and no room left for the retry
    m = episode_metrics([episode([1.0]), episode([0.0, 1.0], obs=4), episode([0.0, 0.0], obs=4), cut])
    assert m["env/turns"] == pytest.approx(1.5)
    assert m["env/observation_tokens"] == pytest.approx(2.0)
    assert m["env/turn_reward"] == pytest.approx(2 / 6)
    assert m["env/first_turn_pass_rate"] == pytest.approx(0.25)
    assert m["env/recovered"] == pytest.approx(0.25) and m["env/recovery_rate"] == pytest.approx(1 / 3)
    assert m["env/retry_cut_at_token_cap"] == pytest.approx(1 / 3)  # of the three that failed first
    assert episode_metrics([Sample([1], "", "stop")]) == {}


def test_retry_metrics_compare_success_within_k_attempts_with_k_independent_samples():
    # problem A: first attempts right, wrong -> 1 of 2; the wrong one recovers. Problem B: both wrong, none recovers.
    a = Group(Problem("a", "1"), [], [episode([1.0]), episode([0.0, 1.0])])
    b = Group(Problem("b", "2"), [], [episode([0.0, 0.0]), episode([0.0, 0.0])])
    m = retry_metrics([a, b], n=2, ks=[1, 2])
    assert m["first_attempt_pass@1"] == pytest.approx(0.25)
    assert m["success_within_2_attempts"] == pytest.approx(0.5)
    assert m["independent_pass@2"] == pytest.approx(0.5)  # A: 1 - C(1,2)/C(2,2) = 1; B: 0
    assert retry_metrics([Group(Problem("c", "3"), [], [Sample([1], "", "stop")])], 1, [1]) == {}


# --- per-turn credit (env.credit=turn) ---------------------------------------------------------------------------

def test_turn_returns_and_later_turn_advantages_by_hand():
    from rlpractice.algorithm.advantages import later_turn_advantages, turn_returns

    assert turn_returns([0.0, 1.0], 0.5) == [0.5, 1.0]
    assert turn_returns([0.0, None, 1.0], 1.0) == [1.0, 1.0, 1.0]
    # turn 1 reached by the first two episodes: G_1 = 1 and 0, mean 0.5, population std 0.5
    later = later_turn_advantages([[0.0, 1.0], [0.0, 0.0], [1.0]], 0.0)
    assert later[0] == pytest.approx([1.0], abs=1e-4) and later[1] == pytest.approx([-1.0], abs=1e-4)
    assert later[2] == []
    assert later_turn_advantages([[0.0, 1.0], [1.0]], 0.0, scale_by_std=False) == [[0.0], []]  # alone: no baseline


def test_with_turn_credit_each_turn_is_a_sequence_of_its_own_with_its_advantage():
    import torch

    from rlpractice.learner.update import TurnCredit, sequences, turn_spans

    assert turn_spans([0, 0, 1, 1, 0, 0, 0]) == [(0, 2), (4, 7)] and turn_spans([1]) == []
    # episode 0: wrong, checked (2 ids), right; episode 1: right at once; episode 2: wrong twice
    samples = [Sample([5, 6, 9, 9, 7, 8], "", "stop", [-1.0] * 6, [0, 0, 1, 1, 0, 0], turn_rewards=[0.0, 1.0]),
               Sample([7, 8], "", "stop", [-1.0] * 2, [0, 0], turn_rewards=[1.0]),
               Sample([5, 6, 9, 9, 5, 5], "", "stop", [-1.0] * 6, [0, 0, 1, 1, 0, 0], turn_rewards=[0.0, 0.0])]
    group = Group(Problem("q", "1"), [1, 2], samples)
    adv = torch.tensor([-0.5, 1.0, -0.5])
    seqs = sequences(group, adv, TurnCredit(discount=0.0))
    assert [(s.ids, s.loss_mask, round(s.advantage, 4)) for s in seqs] == [
        ([1, 2, 5, 6], [0, 0, 1, 1], -0.5),
        ([1, 2, 5, 6, 9, 9, 7, 8], [0, 0, 0, 0, 0, 0, 1, 1], 1.0),  # turn 1: G_1 = 1 vs 0 in the group
        ([1, 2, 7, 8], [0, 0, 1, 1], 1.0),
        ([1, 2, 5, 6], [0, 0, 1, 1], -0.5),
        ([1, 2, 5, 6, 9, 9, 5, 5], [0, 0, 0, 0, 0, 0, 1, 1], -1.0)]
    assert seqs[1].sampler_logps == [-1.0] * 6 and seqs[0].sampler_logps == [-1.0] * 2
    weighted = sequences(group, adv, TurnCredit(0.0, later_weight=3.0))  # env.later_turn_weight: later turns only
    assert [round(s.advantage, 4) for s in weighted] == [-0.5, 3.0, 1.0, -0.5, -3.0]
    whole = sequences(group, adv)  # credit=episode: one sequence per episode, the episode's advantage
    assert [(len(s.ids), s.advantage) for s in whole] == [(8, -0.5), (4, 1.0), (8, -0.5)]
