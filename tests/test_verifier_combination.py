"""Several verifiers with weights, async verifiers, 'not applicable' (None), and dataset columns."""

import pytest

from rlpractice.grading.pool import GradingPool
from rlpractice.grading.registry import Grade, combine, is_failure

PLUGIN = '''
import asyncio

from rlpractice.grading.registry import Grade, verifier


@verifier("shows_steps")
async def shows_steps(completion: str, answer: str, **columns) -> Grade:
    await asyncio.sleep(0)  # e.g. a call to a judge service
    ok = "=" in completion
    return Grade(float(ok), "shows its steps" if ok else "no steps shown")


@verifier("unit_check")
def unit_check(completion: str, answer: str, unit: str | None = None, **columns):
    if unit is None:
        return None  # not applicable: this problem has no unit column
    return unit in completion


@verifier("always_raises")
def always_raises(completion: str, answer: str, **columns):
    raise RuntimeError("boom")
'''


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "mine.py").write_text(PLUGIN)
    return [str(folder / "mine.py")]


def test_combine_is_a_weighted_sum_with_every_reason():
    g = combine({"math": Grade(1.0, "7 equals 7"), "steps": Grade(0.0, "no steps")}, {"math": 1.0, "steps": 0.2})
    assert g.reward == 1.0 and g.parts == {"math": 1.0, "steps": 0.0}
    assert g.reason == "math: 7 equals 7; steps: no steps"
    g = combine({"math": Grade(1.0, "ok"), "unit": None}, {"math": 1.0, "unit": 0.5})
    assert g.reward == 1.0 and g.parts == {"math": 1.0} and "unit: not applicable" in g.reason
    single = Grade(0.0, "3 != 4")
    assert combine({"math": single}, {"math": 1.0}) is single  # one verifier: its grade, unchanged


def test_weighted_async_and_not_applicable_verifiers_through_the_pool(plugins):
    weights = {"math": 1.0, "shows_steps": 0.25, "unit_check": 0.5}
    with GradingPool(weights, plugins, num_workers=1) as pool:
        grades = pool.grade(["3 + 4 = 7. Answer: 7 apples", "Answer: 7", "3 + 4 = 8. Answer: 8"],
                            ["7", "7", "7"], [{"unit": "apples"}, {}, {"unit": "pears"}])
    assert [g.reward for g in grades] == [1.75, 1.0, 0.25]
    assert grades[0].parts == {"math": 1.0, "shows_steps": 1.0, "unit_check": 1.0}
    assert grades[1].parts == {"math": 1.0, "shows_steps": 0.0}  # unit_check did not apply
    assert "shows_steps: shows its steps" in grades[2].reason


def test_one_failing_verifier_costs_only_its_part(plugins):
    with GradingPool({"math": 1.0, "always_raises": 1.0}, plugins, num_workers=1) as pool:
        [g] = pool.grade(["Answer: 7"], ["7"])
    assert g.reward == 1.0 and "always_raises: error: RuntimeError: boom" in g.reason and not is_failure(g.reason)
    with GradingPool({"always_raises": 1.0, "shows_steps": 0.0}, plugins, num_workers=1) as pool:
        [g] = pool.grade(["Answer: 7"], ["7"])
    assert not is_failure(g.reason)  # shows_steps still graded it
    with GradingPool("always_raises", plugins, num_workers=1) as pool:
        [g] = pool.grade(["Answer: 7"], ["7"])
    assert g.reward == 0.0 and is_failure(g.reason)
