"""The README's "Your own task" walk-through, run exactly as written: its shell blocks in order, its Python block
saved under the name its first line gives, in a fresh directory beside this checkout's .venv."""

import json
import os
import re
import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def walkthrough_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own task, start to finish", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.S)


def test_the_readme_walkthrough_runs_as_written(tmp_path):
    blocks = walkthrough_blocks()
    assert [kind for kind, _ in blocks] == ["bash", "python", "bash"]
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    for kind, code in blocks:
        if kind == "python":
            name = code.splitlines()[0].removeprefix("# ").strip()
            (tmp_path / name).write_text(code)
            continue
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    [run_dir] = [p.parent for p in tmp_path.glob("runs/*/*/summary.json")]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rl_steps"] == 3 and summary["heldout_problems"] == 20
    reasons = [json.loads(line)["reason"] for line in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    assert reasons and all(r.startswith(("off by", "no 'Answer")) for r in reasons), reasons  # the user's verifier
    assert "error" not in result.stdout.lower()
