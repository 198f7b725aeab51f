"""rlpractice installs as a package: the wheel carries conf/ and verifiers/, and runs from any directory."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "rlpractice", "conf", "verifiers"]


def test_every_package_folder_is_listed_in_pyproject():
    """packages is an explicit list (conf/ and verifiers/ are mapped folders): a sub-package left out of it would
    be missing from the wheel only, and a listed one that is gone breaks the build."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {p.parent for p in (ROOT / "rlpractice").rglob("*.py") if "__pycache__" not in p.parts}
    found = {".".join(f.relative_to(ROOT).parts) for f in folders} | {"rlpractice.conf", "rlpractice.verifiers"}
    assert listed == found, f"[tool.setuptools] packages: add {sorted(found - listed)}, drop {sorted(listed - found)}"


MY_VERIFIER = '''
from rlpractice.grading.registry import Grade


def judge(completion, answer, **columns):
    return Grade(0.0, "judged by my_verifier")
'''


@pytest.mark.slow
def test_the_installed_wheel_runs_from_another_directory(tmp_path):
    """Build the wheel, install it alone into a fresh venv that borrows this venv's dependencies (a .pth
    file: no second torch download), and run it from a directory that holds no checkout."""
    src = tmp_path / "src"  # a clean copy: setuptools would leave build/ in the checkout, and reuse stale files
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", tmp_path / "dist",
                    src], check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("rlpractice-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*pip, "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], check=True,
                   capture_output=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "WANDB_MODE": "offline"}

    def run(*cmd) -> subprocess.CompletedProcess:
        return subprocess.run([str(c) for c in cmd], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=300)

    where = run(python, "-c", "import rlpractice.conf, rlpractice.verifiers as v; print(v.__path__[0])")
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr  # the wheel's copy, not the checkout

    job = run(python, "-m", "rlpractice", "+experiment=math", "--cfg", "job")
    assert job.returncode == 0, job.stderr[-2000:]
    assert "verifier:\n  name: math" in job.stdout and "tags:\n  - math" in job.stdout

    job = run(venv / "bin" / "rlpractice", "+experiment=countdown", "--cfg", "job")  # the console command
    assert job.returncode == 0, job.stderr[-2000:]
    assert "verifier:\n  name: countdown" in job.stdout

    # A user's verifier file, named by path, grades the dataset's gold answers in the grading workers before any
    # stage starts; it rejects them all, so the run stops there, in one line carrying the verifier's reason.
    (elsewhere / "my_verifier.py").write_text(MY_VERIFIER)
    (elsewhere / "problems.jsonl").write_text("".join(f'{{"question": "{n}+{n}?", "answer": "{2 * n}"}}\n'
                                                      for n in range(1, 4)))
    result = run(venv / "bin" / "rlpractice", "+experiment=math", "data=jsonl", "data.path=problems.jsonl",
                 "data.answer_format=plain", "data.heldout_size=1", "verifier.name=my_verifier.py:judge",
                 f"hydra.run.dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: problems.jsonl:") and "(judged by my_verifier)" in last, last
