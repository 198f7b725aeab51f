"""Tasks written for other trainers run unchanged: a TRL reward function, a verl compute_score, a gym-style
environment class. One check written four ways (tests/data/conventions/) gives the same reward on every
completion of a shared corpus through the real paths (GradingPool's workers; the isolated environment workers),
and broken user code costs its own answer or episode with a clear reason, nothing else."""

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rlpractice.environments.base import Step
from rlpractice.environments.gym_adapter import GymAdapter
from rlpractice.environments.isolated import environment_factory
from rlpractice.errors import UserError
from rlpractice.grading.pool import GradingPool
from rlpractice.grading.registry import get_verifier, is_failure
from rlpractice.textbook.problems import Problem

DATA = Path(__file__).parent / "data" / "conventions"


def corpus(n: int = 120) -> list[tuple[str, str]]:
    """(completion, gold) pairs: right answers in several spellings, wrong ones, and ones without an answer."""
    r = random.Random(0)
    rows = []
    for i in range(n):
        a, b = r.randint(1, 99), r.randint(1, 99)
        gold, shown = str(a + b), [str(a + b), f"{a + b}.", f"{a + b}.0", str(a + b + 1), "seven", None][i % 6]
        steps = f"{a} + {b} makes {a + b if i % 2 else a + b - 10}."
        rows.append((f"{steps} Answer: {shown}" if shown else f"{steps} I am not sure.", gold))
    rows.append(("Answer: 3 no wait\nAnswer: 12", "12"))  # the last Answer: counts
    return rows


def test_the_same_check_in_every_convention_gives_the_same_rewards():
    rows = corpus()
    completions, answers = [c for c, _ in rows], [g for _, g in rows]
    prompts = [f"Question: what is the sum?\nSolution: ({i})" for i in range(len(rows))]
    columns = [{"data_source": "sums", "level": 1} for _ in rows]
    rewards = {}
    for name in [f"trl:{DATA / 'trl_reward.py'}:answer_reward", f"verl:{DATA / 'verl_score.py'}:compute_score",
                 f"{DATA / 'native_verifier.py'}:last_answer"]:
        with GradingPool(name, num_workers=2, timeout_s=10) as pool:
            grades = pool.grade(completions, answers, columns, prompts=prompts)
        assert not [g.reason for g in grades if is_failure(g.reason)], name
        rewards[name.split(":")[0]] = [g.reward for g in grades]

    problems = [Problem(f"sum {i}", g) for i, g in enumerate(answers)]
    with environment_factory(f"gym:{DATA / 'gym_env.py'}:AnswerCheck", [], step_timeout_s=10) as make_env:

        def episode(k: int) -> Step:
            env = make_env()
            assert env.reset(problems[k]) is None and env.gives_reward and env.stop_strings == ()
            return env.step(completions[k])

        with ThreadPoolExecutor(8) as threads:  # the sampler's step threads share the workers
            steps = list(threads.map(episode, range(len(rows))))
    assert all(s.done for s in steps)
    rewards["gym"] = [s.reward for s in steps]

    assert len(rows) >= 100
    assert rewards["trl"] == rewards["verl"] == rewards["gym"] == rewards[str(DATA / "native_verifier.py")]
    assert 0 < sum(rewards["trl"]) < len(rows)  # some right, some wrong


TRL_PROBES = '''
import asyncio


def shapes(prompts, completions, answer, **kwargs):
    c = completions[0]
    if c == "str":
        return "1.0"
    if c == "two":
        return [1.0, 0.0]
    if c == "float":
        return 1.0
    if c == "word":
        return ["high"]
    if c == "raise":
        return 1 / 0
    if c == "none":
        return [None]
    # what TRL passes: one list per argument, the gold answer as `answer`, the prompt, the columns
    ok = prompts == ["the prompt"] and answer == ["7"] and kwargs == {"level": [3]}
    return [float(ok and c == "7")]


async def later(prompts, completions, **kwargs):
    await asyncio.sleep(0)
    return [0.5]
'''

VERL_PROBES = '''
def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    if solution_str == "nodict":
        return {"acc": 1.0}
    if solution_str == "str":
        return "1"
    return float(data_source == "src" and extra_info == {"split": "train"} and solution_str == ground_truth)
'''


def test_trl_and_verl_return_values_of_the_wrong_shape_are_that_answers_failure(tmp_path):
    (tmp_path / "probes.py").write_text(TRL_PROBES)
    (tmp_path / "verl_probes.py").write_text(VERL_PROBES)
    cases = ["str", "two", "float", "word", "raise", "none", "7", "8"]
    with GradingPool(f"trl:{tmp_path / 'probes.py'}:shapes", num_workers=2) as pool:
        grades = pool.grade(cases, ["7"] * len(cases), [{"level": 3}] * len(cases), ["the prompt"] * len(cases))
    by_case = dict(zip(cases, grades, strict=True))
    for case in ["str", "two", "float", "word"]:
        assert by_case[case].reason.startswith("error: ValueError:") and "returned" in by_case[case].reason, case
    assert "list with one float" in by_case["str"].reason and "each reward is a float" in by_case["word"].reason
    assert by_case["raise"].reason.startswith("error: ZeroDivisionError")
    assert by_case["none"].reason.endswith(": not applicable") and by_case["none"].reward == 0.0
    assert (by_case["7"].reward, by_case["8"].reward) == (1.0, 0.0)  # the good answers beside them are graded
    with GradingPool(f"trl:{tmp_path / 'probes.py'}:later", num_workers=1) as pool:
        assert pool.grade(["x"], ["y"])[0].reward == 0.5  # async, and no prompts given

    with GradingPool(f"verl:{tmp_path / 'verl_probes.py'}:compute_score", num_workers=1) as pool:
        grades = pool.grade(["4", "4", "nodict", "str"], ["4", "4", "4", "4"],
                            [{"data_source": "src", "extra_info": {"split": "train"}}, {"split": "train"}, {}, {}])
    assert [g.reward for g in grades[:2]] == [1.0, 0.0]  # extra_info: its own column when the problem has one
    assert "without 'score'" in grades[2].reason and is_failure(grades[3].reason)

    verl = get_verifier(f"verl:{DATA / 'verl_score.py'}:compute_score")
    assert verl.fn("Answer: 4", "4").reason == "score 1 (pred='4')"  # the dict's other keys, in the reason
    with pytest.raises(UserError, match="has no 'nope'"):
        get_verifier(f"trl:{tmp_path / 'probes.py'}:nope")


BAD_ENVS = '''
import os
import time

from rlpractice.environments.base import Step


class Bad:
    def reset(self, *, seed=None, options=None):
        if options["question"] == "reset fails":
            raise KeyError("no such level")
        return "Guess:", {}

    def step(self, action):
        if action == "hang":
            time.sleep(60)
        if action == "die":
            os._exit(3)
        if action == "short":
            return "", 1.0, True
        if action == "text reward":
            return "", "high", True, False, {}
        if action == "big":
            return bytearray(4 * 2**30)
        if action == "raise":
            raise ValueError("the user's bug")
        return "\\nagain:", 1.0, action == "stop", False, None


class Native:
    stop_strings = ("</call>",)
    gives_reward = True

    def reset(self, problem):
        return None

    def step(self, turn):
        if turn == "bad":
            return {"reward": 1}
        return Step("", 1.0, True, {"reason": "ok"})


class Counted:
    """Says how many instances its worker holds."""

    live = 0

    def __init__(self):
        Counted.live += 1

    def __del__(self):
        Counted.live -= 1

    def reset(self, *, seed=None, options=None):
        return "", {}

    def step(self, action):
        return str(Counted.live), 0.0, action == "stop", False, {}


if __import__("multiprocessing").current_process().name != "MainProcess":
    class OnlyHere:  # defined in the sampler only: the worker cannot load it
        pass
else:
    class OnlyHere(Counted):
        pass


NOT_A_CLASS = 3
'''


@pytest.fixture
def bad_envs(tmp_path):
    (tmp_path / "bad_envs.py").write_text(BAD_ENVS)
    return tmp_path / "bad_envs.py"


def test_a_gym_environment_that_hangs_dies_or_misbehaves_costs_its_episode_only(bad_envs):
    problem = Problem("q", "1")
    with environment_factory(f"gym:{bad_envs}:Bad", [], step_timeout_s=1.0, num_workers=1,
                             memory_limit_mb=1024) as make_env:
        first, other = make_env(), make_env()
        assert first.reset(problem) == "Guess:" and other.reset(problem) == "Guess:"
        assert first.step("go on") == Step("\nagain:", 1.0, False, {})
        for action, why in [("short", r"error: ValueError: step\(\) returned a tuple .*terminated, truncated"),
                            ("text reward", "error: ValueError: step.* a reward of type str, not a number"),
                            ("raise", "error: ValueError: the user's bug"),
                            ("big", "error: MemoryError")]:
            env = make_env()
            env.reset(problem)
            with pytest.raises(RuntimeError, match=why):
                env.step(action)
        env = make_env()
        with pytest.raises(RuntimeError, match="error: KeyError: 'no such level'"):
            env.reset(Problem("reset fails", "1"))

        hung = make_env()
        hung.reset(problem)
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"^timeout: environment step took longer than 1 s$"):
            hung.step("hang")
        assert time.monotonic() - start < 5
        with pytest.raises(RuntimeError, match=r"crash: environment worker died \(killed: an episode's step"):
            other.step("go on")  # its instance lived on the killed worker
        fresh = make_env()  # a new worker
        assert fresh.reset(problem) == "Guess:" and fresh.step("stop").done

        dying = make_env()
        dying.reset(problem)
        with pytest.raises(RuntimeError, match=r"crash: environment worker died \(exit code 3\) during step"):
            dying.step("die")
        with pytest.raises(RuntimeError, match="crash"):
            first.step("go on")
        fresh = make_env()
        fresh.reset(problem)
        assert fresh.step("stop") == Step("\nagain:", 1.0, True, {})
        with pytest.raises(RuntimeError, match="step.. after the episode ended"):
            fresh.step("stop")


def test_a_native_environment_class_runs_isolated_too(bad_envs):
    with environment_factory(f"{bad_envs}:Native", [], step_timeout_s=5, num_workers=1) as make_env:
        env = make_env()
        assert env.stop_strings == ("</call>",) and env.reset(Problem("q", "1")) is None
        assert env.step("good") == Step("", 1.0, True, {"reason": "ok"})
        env = make_env()
        env.reset(Problem("q", "1"))
        with pytest.raises(RuntimeError, match=r"error: ValueError: step\(\) returned a dict, not a Step"):
            env.step("bad")


def test_a_worker_forgets_the_instances_of_episodes_that_are_gone(bad_envs):
    with environment_factory(f"gym:{bad_envs}:Counted", [], step_timeout_s=5, num_workers=1) as make_env:
        for _ in range(3):
            env = make_env()
            env.reset(Problem("q", "1"))
            del env  # left unfinished: its instance goes at the worker's next call
        env = make_env()
        env.reset(Problem("q", "1"))
        assert env.step("go on").observation == "1"
        assert env.step("stop").observation == "1"
        env = make_env()
        env.reset(Problem("q", "1"))
        assert env.step("go on").observation == "1"  # a finished episode's instance went at its last step


def test_a_class_the_worker_cannot_load_fails_its_episodes_with_the_reason(bad_envs):
    with environment_factory(f"gym:{bad_envs}:OnlyHere", [], step_timeout_s=5, num_workers=1) as make_env:
        with pytest.raises(RuntimeError, match=r"^error: environment worker failed to start: UserError: env.name="):
            make_env().reset(Problem("q", "1"))


def test_bad_environment_names_are_one_user_error_naming_env_name(bad_envs):
    for name, why in [(f"gym:{bad_envs}:Missing", "env.name=.*has no 'Missing'"),
                      (f"gym:{bad_envs.parent / 'nowhere.py'}:Env", "env.name: no such file"),
                      ("gym:no_such_module:Env", "env.name: no module named 'no_such_module'"),
                      (f"gym:{bad_envs}:NOT_A_CLASS", "env.name=.* is a int, not a class"),
                      (f"gym:{bad_envs}:Step", r"env.name=.*Step has no reset or step\(\) method")]:
        with pytest.raises(UserError, match=why):
            environment_factory(name, [], step_timeout_s=1)


def test_the_gym_adapter_maps_the_five_tuple_and_the_problem():
    class Echo:
        stop_strings = [">>"]

        def reset(self, *, seed=None, options=None):
            self.options = options
            return {"not": "text"}, {}

        def step(self, action):
            return None, True, False, True, {"n": 1}

    env = GymAdapter(Echo())
    assert env.reset(Problem("2+2?", "4", columns={"level": 2})) is None and env.stop_strings == (">>",)
    assert env.env.options == {"prompt": "Question: 2+2?\nSolution:", "question": "2+2?", "answer": "4", "level": 2}
    assert env.step("x") == Step("", 1.0, True, {"n": 1})  # truncated ends it too
