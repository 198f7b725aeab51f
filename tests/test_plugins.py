"""Verifiers load only what the config names: a function in a file, a registered name from a plugin file, a
module; a plugin that fails to import stops the run in one line, before anything starts."""

import os
import subprocess
import sys

import pytest

from rlpractice.errors import UserError
from rlpractice.grading.pool import GradingPool
from rlpractice.grading.registry import get_verifier
from rlpractice.plugins import load_object

MINE = '''
from rlpractice.grading.registry import Grade, verifier


@verifier("says_seven")
def says_seven(completion, answer, **columns):
    return Grade(float("7" in completion), "mine")


def plain(completion, answer, **columns):
    return completion.strip() == answer
'''

# A data-export script kept beside the verifier: importing it would run it (here it leaves a mark and fails).
EXPORT = '''
from pathlib import Path

Path(__file__).with_name("export_ran").write_text("imported")
raise SystemExit("usage: export.py OUT")
'''


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "mine.py").write_text(MINE)
    (tmp_path / "export.py").write_text(EXPORT)
    return tmp_path


def test_a_plugin_folder_holding_a_script_runs_only_the_plugin(folder):
    v = get_verifier("says_seven", plugins=[str(folder / "mine.py")])
    assert v.fn("Answer: 7", "7").reason == "mine"
    with pytest.raises(UserError, match=r"is a folder; name the plugin files in it"):
        get_verifier("says_seven", plugins=[str(folder)])
    assert not (folder / "export_ran").exists()


def test_a_function_in_a_file_is_a_verifier_graded_in_the_worker_processes(folder):
    ref = f"{folder / 'mine.py'}:plain"
    with GradingPool(ref, num_workers=1) as pool:
        grades = pool.grade(["42", "41"], ["42", "42"])
    assert [g.reward for g in grades] == [1.0, 0.0] and grades[0].reason == "correct"
    with GradingPool({ref: 1.0, "says_seven": 0.5}, [str(folder / "mine.py")], num_workers=1) as pool:
        [g] = pool.grade(["7"], ["7"])
    assert g.reward == 1.5 and g.parts == {ref: 1.0, "says_seven": 1.0}
    assert not (folder / "export_ran").exists()


def test_a_file_named_twice_is_imported_once(folder):
    plugin = str(folder / "mine.py")
    assert load_object(f"{plugin}:plain", "x") is load_object(f"{folder}/./mine.py:plain", "y")
    assert get_verifier("says_seven", [plugin]).fn is load_object(f"{plugin}:says_seven", "z")


def test_a_broken_plugin_is_one_line_naming_the_file_the_line_and_the_error(folder):
    (folder / "broken.py").write_text("import json\n\nVALUE = json.loads('{not json')\n")
    with pytest.raises(UserError) as err:
        get_verifier("math", plugins=[str(folder / "broken.py")])  # fails even though its names are unused
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"verifier.plugins: {folder / 'broken.py'} failed to import (line 3): JSONDecodeError: ")
    with pytest.raises(UserError, match=r"export\.py failed to import \(line 5\): SystemExit: usage: export\.py OUT"):
        get_verifier("math", plugins=[str(folder / "export.py")])
    (folder / "syntax.py").write_text("def f(:\n")
    with pytest.raises(UserError, match=r"syntax\.py failed to import: SyntaxError: .*line 1"):
        get_verifier("math", plugins=[str(folder / "syntax.py")])


@pytest.mark.parametrize("ref, message", [
    ("missing.py:fn", "verifier: no such file .*missing.py"),
    ("{folder}/mine.py:nope", r"has no 'nope' \(it defines: .*plain.*\)"),
    ("no_such_module:fn", "no module named 'no_such_module'"),
    ("json:dumps", None),  # a dotted module path, as before
])
def test_references_that_do_not_resolve_say_why(folder, ref, message):
    ref = ref.format(folder=folder)
    if message is None:
        assert get_verifier(ref).fn.__name__ == "dumps"
        return
    with pytest.raises(UserError, match=message):
        get_verifier(ref)


def test_the_command_line_stops_in_one_line_before_any_stage(folder, tmp_path):
    (folder / "broken.py").write_text("raise RuntimeError('no API key')\n")
    result = subprocess.run(
        [sys.executable, "-m", "rlpractice", "+experiment=math", f"verifier.plugins=[{folder / 'broken.py'}]",
         f"hydra.run.dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "offline"})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: verifier.plugins: {folder / 'broken.py'} failed to import (line 1): RuntimeError: no API key")
    assert "[pretrain]" not in result.stdout and "[rl]" not in result.stdout

