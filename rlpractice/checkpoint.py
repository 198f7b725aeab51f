"""RL checkpoints: everything a stopped run needs to continue where it was.

    checkpoints/rl_steps/step_000012/   HF model + tokenizer (vLLM can serve it as is)
                                        trainer_state.pt   optimizer state, torch and Python RNG states
                                        state.json         step, practice order, the step's metrics

Each is written into a temporary directory and renamed (see `model.save`), so a directory named
`step_*` is always complete; a crash while writing leaves only a `.tmp` directory, which is ignored.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch

from rlpractice import model as policy

PREFIX = "step_"


def save_rl_state(root: Path, step: int, model, tokenizer, optimizer, state: dict, keep: int) -> Path:
    """Write checkpoint `step` under `root` and delete all but the newest `keep` ones."""

    def trainer_files(tmp: Path) -> None:
        torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                    "python_rng": random.getstate()}, tmp / "trainer_state.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}))

    path = policy.save(model, tokenizer, root / f"{PREFIX}{step:06d}", extra=trainer_files)
    for old in complete_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (unfinished `.tmp` directories are skipped)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()
             and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_rl_state(root: Path) -> Path | None:
    found = complete_checkpoints(root)
    return found[-1] if found else None


def load_rl_state(path: Path, optimizer) -> dict:
    """Restore the optimizer and RNG states in place; return state.json (the model loads from `path`)."""
    trainer = torch.load(path / "trainer_state.pt", weights_only=False, map_location="cpu")
    optimizer.load_state_dict(trainer["optimizer"])
    torch.set_rng_state(trainer["torch_rng"])
    random.setstate(trainer["python_rng"])
    return json.loads((path / "state.json").read_text())
