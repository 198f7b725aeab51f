"""Tool output in training data: the rollout's masks reach the learner, and SFT cuts worked solutions with calls
into the same pieces a rollout appends (quick; the real engine's tool loop is in test_tools_rollout.py)."""

import json

import pytest
from hydra import compose, initialize_config_dir

from rlpractice.config_schema import ToolsConfig
from rlpractice.environments.loop import encode_result
from rlpractice.environments.tool_env import make_runner, tool_settings
from rlpractice.grading.registry import Grade
from rlpractice.learner.forward import Sequence, prompt_length
from rlpractice.learner.steps import target_tokens
from rlpractice.learner.update import sequences
from rlpractice.rollout.batch import Group, Sample, tool_metrics
from rlpractice.stages.sft import worked_sequence
from rlpractice.textbook.math_textbook import build_textbook
from rlpractice.textbook.problems import Problem
from rlpractice.textbook.tool_textbook import calculator_textbook, with_calculator_calls
from rlpractice.tokenizer import train_tokenizer
from rlpractice.tools import ToolRunner
from rlpractice.tools.worked import segments, solution_ids
from tests.conftest import ROOT

SOLUTION = " 4 * 4 = <<4*4>> 16. 26 - 16 = <<26-16>> 10. Answer: 10"


@pytest.fixture(scope="module")
def tokenizer():
    book = calculator_textbook(build_textbook(0, 300, 200, 10, 10))
    return train_tokenizer(book.exposition, 400)


@pytest.fixture(scope="module")
def runner():
    r = ToolRunner(["calculator"])
    yield r
    r.close()


def test_sequences_mask_tool_output_ids():
    sample = Sample(ids=[5, 6, 7, 8, 9, 2], text="", finish="stop", sampler_logps=[-1.0, -1.0, 0.0, 0.0, -1.0, -1.0],
                    observation_mask=[0, 0, 1, 1, 0, 0], tool_calls=1)
    [seq] = sequences(Group(Problem("q", "1"), [11, 12, 13], [sample]))
    assert seq.ids == [11, 12, 13, 5, 6, 7, 8, 9, 2]
    assert seq.loss_mask == [0, 0, 0, 1, 1, 0, 0, 1, 1]
    assert prompt_length(seq) == 3  # the shared-prompt path still finds the prompt
    assert target_tokens([seq]) == 4  # the tool's two ids are not learned


def test_sequences_without_tools_learn_every_completion_token():
    [seq] = sequences(Group(Problem("q", "1"), [11], [Sample([5, 6], "", "stop")]))
    assert seq.loss_mask == [0, 1, 1]


def test_tool_metrics_read_the_samples_tool_record():
    right = Sample([1, 2, 3], "t", "stop", observation_mask=[0, 1, 0], tool_calls=2, tool_errors=1, tool_timeouts=1,
                   tool_s=0.5, grade=Grade(1.0, ""))
    plain = Sample([1], "", "stop", observation_mask=[0], grade=Grade(1.0, ""))
    m = tool_metrics([right, plain, Sample([1], "", "stop", observation_mask=[0], grade=Grade(0.0, ""))])
    assert m["tools/calls_per_completion"] == pytest.approx(2 / 3)
    assert m["tools/error_rate"] == 0.5 and m["tools/timeout_rate"] == 0.5
    assert m["tools/correct_with_tool"] == 0.5  # one of the two correct samples called a tool


def test_textbook_shows_calculator_calls_on_whole_number_steps_only():
    assert with_calculator_calls(" 3 * 9 = 27. 27 - 5 = 22. Answer: 22") == \
        " 3 * 9 = <<3*9>> 27. 27 - 5 = <<27-5>> 22. Answer: 22"
    rules = "Fractions with the same bottom number add on top: 3/8 + 2/8 = 5/8. A whole is 9/9, so 9/9 - 7/9 = 2/9."
    assert with_calculator_calls(rules) == rules  # the exposition's rules stay worked by hand


def test_textbook_solves_fraction_problems_with_one_call_on_the_questions_numbers():
    assert with_calculator_calls(" 1 = 9/9. 9/9 - 7/9 = 2/9. Answer: 2/9") == " 1 - 7/9 = <<1-7/9>> 2/9. Answer: 2/9"
    assert with_calculator_calls(" 1/5 = 3/15. 3/15 + 5/15 = 8/15. Answer: 8/15") == \
        " 1/5 + 5/15 = <<1/5+5/15>> 8/15. Answer: 8/15"
    assert with_calculator_calls(" 3/8 + 3/8 = 6/8. 6/8 = 3/4. Answer: 3/4") == \
        " 3/8 + 3/8 = <<3/8+3/8>> 0.75. Answer: 0.75"  # as the calculator shows it: the grader takes 0.75 for 3/4


def test_segments_cut_at_each_call_and_check_the_tool_result(runner):
    assert segments(SOLUTION, runner) == [(" 4 * 4 = <<4*4>>", False), (" 16", True),
                                          (". 26 - 16 = <<26-16>>", False), (" 10", True),
                                          (". Answer: 10", False)]
    with pytest.raises(ValueError, match="not by the tool's result ' 10'"):
        segments(" 26 - 16 = <<26-16>> 12. Answer: 12", runner)  # a slip the calculator never makes


def test_sft_encodes_results_as_the_rollout_appends_them_and_masks_them(tokenizer, runner):
    problem = Problem("Tom has 26 apples and eats 16.", "10", solution=SOLUTION)
    seq = worked_sequence(problem, tokenizer, runner)
    prompt = tokenizer(problem.prompt)["input_ids"]
    ids, mask = solution_ids(SOLUTION, tokenizer, runner)
    assert seq.ids == prompt + ids + [tokenizer.eos_token_id]
    assert seq.loss_mask == [0] * len(prompt) + mask + [1]
    # the masked ids are exactly each result encoded on its own, after the ids of the text up to its call
    first = encode_result(tokenizer, " 4 * 4 = <<4*4>>")
    result = encode_result(tokenizer, " 16")
    assert ids[: len(first) + len(result)] == first + result
    assert mask[: len(first) + len(result)] == [1] * len(first) + [0] * len(result)
    masked = [t for t, m in zip(ids, mask, strict=True) if m == 0]
    assert masked == encode_result(tokenizer, " 16") + encode_result(tokenizer, " 10")
    assert tokenizer.decode(ids) == SOLUTION  # nothing lost or added by cutting


def test_worked_sequence_without_tools_is_unchanged(tokenizer):
    problem = Problem("q?", "10", solution=" 26 - 16 = 10. Answer: 10")
    seq = worked_sequence(problem, tokenizer)
    assert isinstance(seq, Sequence) and seq.loss_mask.count(0) == len(tokenizer(problem.prompt)["input_ids"])


def test_tools_are_off_by_default_and_on_in_the_tools_experiment():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        assert tool_settings(compose("config", overrides=["+experiment=math"])) is None
        on = tool_settings(compose("config", overrides=["+experiment=math_tools"]))
    assert on.names == ["calculator"] and on.textbook_calls and on.max_calls >= 1


def test_make_runner_imports_a_users_tool_plugin_and_sets_up_the_sandbox(tmp_path):
    from rlpractice.tools.syntax import Call

    plugin = tmp_path / "shout.py"
    plugin.write_text("from rlpractice.tools import tool\n\n@tool('shout')\ndef shout(text: str) -> str:\n"
                      "    return text.upper()\n")
    runner = make_runner(ToolsConfig(names=["calculator", "python", "shout"], plugins=[str(plugin)]))
    try:
        assert runner.stop_strings == ["</shout>", ">>", "```output"]
        shout, code = runner.run([runner.parse("say <shout>hi</shout>"), Call("python", "print(6 * 7)")])
        assert shout.text == "<output>HI</output>" and code.text == "\n42\n```\n"
    finally:
        runner.close()


def test_gsm8k_annotations_in_a_users_jsonl_become_calls_sft_teaches(tmp_path, tokenizer, runner):
    from rlpractice.textbook.sources import load_book

    records = [{"question": "Janet has 16 eggs and eats 3. How many are left?",
                "answer": "She has 16 - 3 = <<16-3=13>>13 eggs left.\n#### 13"},
               {"question": "10 apples shared by 3. How many each?",  # the calculator writes '10/3', not '3.33'
                "answer": "Each gets 10/3 = <<10/3=3.33>>3.33 apples.\n#### 3.33"},
               {"question": "A held-out one: 2 + 2?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"}]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    data = ["data=jsonl", f"data.path={path}", f"data.heldout_path={path}"]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        with_tools = load_book(compose("config", overrides=[*data, "+tools=calculator"]))
        without = load_book(compose("config", overrides=data))
    eggs, apples, _ = with_tools.worked
    assert eggs.solution == " She has 16 - 3 = <<16-3>> 13 eggs left. Answer: 13"
    assert apples.solution == " Each gets 10/3 = 3.33 apples. Answer: 3.33"  # no call the tool would answer otherwise
    assert with_tools.exposition[0].endswith(eggs.solution)  # pretraining reads the calls too
    assert without.worked[0].solution == " She has 16 - 3 = 13 eggs left. Answer: 13"
    ids, mask = solution_ids(eggs.solution, tokenizer, runner)  # SFT: the result is the tool's, masked
    assert [t for t, m in zip(ids, mask, strict=True) if m == 0] == encode_result(tokenizer, " 13")


def test_calls_ending_in_punctuation_stop_on_token_ids_others_on_strings(tokenizer):
    from rlpractice.environments.loop import StopSettings

    stops = StopSettings.of([">>", "```output"], tokenizer)
    assert stops.strings == ["```output"]  # tokens starting with 't' could end it: found in decoded text instead
    texts = {i: tokenizer.decode([i]) for i in stops.token_ids}
    assert ">>" in texts.values() and ">" in texts.values()  # '>' then '>' ends a call too
    assert all(">" in t for t in texts.values())
    ending = [i for i in range(len(tokenizer)) if (t := tokenizer.decode([i])).startswith(">") or ">>" in t]
    assert sorted(stops.token_ids) == ending
    assert stops.at(sorted(stops.token_ids)[0]) and stops.at("```output") and not stops.at(None)
    assert StopSettings.of([">>", "```output"], tokenizer) is stops  # the vocabulary is read once
