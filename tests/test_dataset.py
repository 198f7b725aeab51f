"""Your own data: GSM8K/MATH/plain answers, JSONL/Parquet/save_to_disk, and bad records named by file:line."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from rlpractice.errors import UserError
from rlpractice.grading.pool import GradingPool
from rlpractice.textbook.dataset import load_problems, split_answer
from rlpractice.textbook.gold import drop_ungradable
from rlpractice.textbook.sources import load_book

GSM8K = Path(__file__).parent / "data" / "gsm8k_test_first500.jsonl"


def test_gsm8k_sample_loads_with_answers_and_clean_solutions():
    problems, bad = load_problems(GSM8K, "question", "answer", "gsm8k")
    assert len(problems) == 500 and not bad
    first = problems[0]
    assert first.answer == "18"
    assert "<<" not in first.solution and first.solution.endswith("Answer: 18")
    assert first.source.endswith("gsm8k_test_first500.jsonl:1")


def test_every_gsm8k_gold_answer_grades_as_correct_against_itself():
    problems, _ = load_problems(GSM8K, "question", "answer", "gsm8k")
    with GradingPool("math", num_workers=1) as pool:
        kept = drop_ungradable(problems, pool, skip_bad=False)
        assert len(kept) == 500
        # and a GSM8K-style model completion is graded by the same verifier
        grades = pool.grade(["16 - 3 - 4 = 9. 9 * 2 = 18.\n#### 18", "Answer: 17"], ["18", "18"])
    assert [g.reward for g in grades] == [1.0, 0.0]


@pytest.mark.parametrize("fmt,text,answer", [
    ("gsm8k", "2 + 2 = <<2+2=4>>4\n#### 1,234", "1234"),
    ("boxed", "So $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("plain", " 42 ", "42"),
    ("gsm8k", "no mark here", None),
    ("boxed", "no box", None),
])
def test_answer_formats(fmt, text, answer):
    assert split_answer(text, fmt)[0] == answer


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_json_line_is_named_by_file_and_line(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", ['{"question": "1+1?", "answer": "#### 2"}', '{"question": "oops"',
                                               '{"question": "2+2?", "answer": "#### 4"}'])
    with pytest.raises(UserError, match=r"d\.jsonl:2: not valid JSON.*data\.skip_bad=true"):
        load_problems(path, "question", "answer", "gsm8k")
    problems, bad = load_problems(path, "question", "answer", "gsm8k", skip_bad=True)
    assert [p.answer for p in problems] == ["2", "4"]
    assert [b.where.rsplit(":", 1)[1] for b in bad] == ["2"]


def test_missing_key_and_missing_answer_are_named(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", ['{"problem": "1+1?", "answer": "#### 2"}'])
    with pytest.raises(UserError, match=r"d\.jsonl:1: no key 'question'.*data\.question_key"):
        load_problems(path, "question", "answer", "gsm8k")
    path = _write_jsonl(tmp_path / "e.jsonl", ['{"question": "1+1?", "answer": "two"}'])
    with pytest.raises(UserError, match=r"e\.jsonl:1: no final answer in 'answer'"):
        load_problems(path, "question", "answer", "gsm8k")


def test_ungradable_gold_answer_is_named(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", ['{"question": "q1", "answer": "3"}',
                                               '{"question": "q2", "answer": "3 or 4 apples?!"}'])
    problems, _ = load_problems(path, "question", "answer", "plain")
    with GradingPool("math", num_workers=1) as pool:
        with pytest.raises(UserError, match=r"d\.jsonl:2: the verifier cannot grade"):
            drop_ungradable(problems, pool, skip_bad=False)
        assert [p.question for p in drop_ungradable(problems, pool, skip_bad=True)] == ["q1"]


def test_parquet_and_save_to_disk_folders_give_the_same_problems(tmp_path):
    rows = [{"question": f"What is {i} + 1?", "answer": f"#### {i + 1}", "source_id": i} for i in range(5)]
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "d.parquet")
    folder = tmp_path / "saved"  # the layout datasets.save_to_disk writes: Arrow stream files + state.json
    folder.mkdir()
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    from_parquet, _ = load_problems(tmp_path / "d.parquet", "question", "answer", "gsm8k")
    from_disk, _ = load_problems(folder, "question", "answer", "gsm8k")
    assert from_parquet == from_disk and len(from_disk) == 5
    assert from_disk[3].answer == "4" and from_disk[3].columns == {"source_id": 3}  # extra columns pass through


def test_dataset_book_sets_aside_a_seeded_heldout_split():
    cfg = OmegaConf.create({"seed": 0, "data": {"source": "file", "path": str(GSM8K), "split": "train",
                                                 "question_key": "question", "answer_key": "answer",
                                                 "answer_format": "gsm8k", "heldout_path": None,
                                                 "heldout_size": 50, "skip_bad": False}})
    book = load_book(cfg)
    assert len(book.heldout) == 50 and len(book.practice) == 450 and len(book.worked) == 450
    assert not {p.question for p in book.heldout} & {p.question for p in book.practice}
    assert load_book(cfg).heldout == book.heldout  # same seed, same split
    assert book.exposition[0].startswith("Question: ")


def test_missing_data_path_is_a_clear_error():
    with pytest.raises(UserError, match="does not exist"):
        load_problems("/nonexistent/train.jsonl", "question", "answer", "gsm8k")
