import os
import subprocess
import sys
from pathlib import Path

import pytest

import rlpractice.config_schema  # noqa: F401 - registers the config schema conf/ names, before any test composes

ROOT = Path(__file__).resolve().parents[1]

# A configuration small enough for a test (under a minute on 2 CPU cores), still all three stages
# through real Ray actors running real vLLM engines. The engines run eager: compiling pays off over a long run's
# sampling, not a test's few steps, and a cold compile costs more than the whole test. The compiled default
# is run end to end by test_e2e.py::test_three_stages_end_to_end.
EAGER = "sampler.engine.enforce_eager=true"
TINY = [
    "+experiment=math",
    "textbook.exposition_paragraphs=400", "textbook.worked=200", "textbook.practice=64", "textbook.heldout=16",
    "pretrain.steps=15", "pretrain.batch_size=8", "sft.steps=10", "sft.batch_size=8",
    "rl.steps=2", "rl.prompts_per_step=4", "rl.samples_per_prompt=16", "rl.eval_every=1",
    "eval.samples_per_problem=4", "eval.k=[1,4]", "sampler.max_new_tokens=24",
    "model.hidden_size=64", "model.num_heads=2", "model.num_layers=2", "model.intermediate_size=128", EAGER,
]


def cli_env() -> dict[str, str]:
    """The environment a user's shell gives the CLI: W&B offline, and no W&B service of this test process (wandb
    points child processes at its own; a run killed there would keep its run id busy for the resumed one)."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}


def run_cli(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = cli_env()
    return subprocess.run([sys.executable, "-m", "rlpractice", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def tiny_args():
    return list(TINY)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need a CUDA device; without one they are deselected (CI runs on CPU), and said so."""
    import torch

    if torch.cuda.is_available():
        return
    gpu = [item for item in items if "gpu" in item.keywords]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if "gpu" not in item.keywords]
        config._rlpractice_gpu_deselected = len(gpu)


def pytest_terminal_summary(terminalreporter, config):
    n = getattr(config, "_rlpractice_gpu_deselected", 0)
    if n:
        terminalreporter.write_line(f"{n} GPU tests deselected: no CUDA device here (run them on a GPU box: "
                                    "python -m pytest -m gpu)")
