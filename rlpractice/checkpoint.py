"""Resumable checkpoints: everything a stopped stage needs to continue where it was.

    checkpoints/pretrain_steps/step_000100/   (and sft_steps/, rl_steps/)
        HF model + tokenizer    vLLM can serve it as is; pretraining's tokenizer lives only here until the stage ends
        trainer_state.pt        optimizer state, torch and Python RNG states, and, for pretrain/SFT, the LR
                                scheduler and the stage's batch-drawing random.Random (its data position)
        state.json              step, and what the stage needs besides (RL: practice order, the step's metrics)

Each is written into a temporary directory and renamed (see `model.save`), so a directory named
`step_*` is always complete; a crash while writing leaves only a `.tmp` directory, which is ignored.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import zipfile
from pathlib import Path

import torch

from rlpractice import model as policy
from rlpractice.errors import UserError

PREFIX = "step_"


def save_state(root: Path, step: int, learner, tokenizer, state: dict, keep: int,
               data_rng: random.Random | None = None) -> Path:
    """Write checkpoint `step` of `learner` (its policy, optimizer and LR schedule; learner/local.py) under `root`
    and delete all but the newest `keep` ones."""
    optimizer, scheduler = learner.optimizer, learner.schedule

    def trainer_files(tmp: Path) -> None:
        trainer = {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                   "python_rng": random.getstate()}
        if scheduler is not None:
            trainer["scheduler"] = scheduler.state_dict()
        if data_rng is not None:
            trainer["data_rng"] = data_rng.getstate()
        torch.save(trainer, tmp / "trainer_state.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}))

    path = policy.save(learner.full_model(), tokenizer, root / f"{PREFIX}{step:06d}", extra=trainer_files)
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


def latest_state(root: Path) -> Path | None:
    """The newest checkpoint under `root` whose files are intact. A damaged newer one (a file cut short or
    unreadable, e.g. a disk that filled up) is reported in one line and skipped: that is what keeping more than
    one is for. With only damaged ones, the error names them."""
    found = complete_checkpoints(root)
    damaged = []
    for path in reversed(found):
        problem = damage(path)
        if problem is None:
            return path
        print(f"[resume] skipping the damaged checkpoint {path}: {problem}", flush=True)
        damaged.append(f"{path} ({problem})")
    if damaged:
        raise UserError(f"no intact checkpoint to resume from under {root}: {'; '.join(damaged)}. Delete the damaged "
                        "directories to start that stage again, or restore them from a backup")
    return None


def damage(path: Path) -> str | None:
    """What is wrong with checkpoint directory `path`, or None when every file it needs reads back whole."""
    try:
        for name in ("state.json", "config.json"):
            if (path / name).is_file():
                json.loads((path / name).read_text())
        weights = sorted(path.glob("*.safetensors"))
        if not weights:
            return "no model weights (*.safetensors)"
        for file in weights:
            if problem := safetensors_damage(file):
                return f"{file.name}: {problem}"
        if (path / "trainer_state.pt").is_file():
            zipfile.ZipFile(path / "trainer_state.pt").close()  # torch.save's zip: its index is at the very end
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        return f"{type(e).__name__}: {e}"
    return None


def safetensors_damage(file: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors' bytes: check that the
    header parses and the file is as long as the header says (a cut-short file is not)."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            return "shorter than a header"
        n = struct.unpack("<Q", raw)[0]
        if n > size - 8:
            return "invalid header length (the file was cut short)"
        header = json.loads(f.read(n))
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if size < 8 + n + end:
        return f"cut short ({size} of {8 + n + end} bytes)"
    return None


def load_state(path: Path, learner, data_rng: random.Random | None = None) -> dict:
    """Restore `learner`'s optimizer and LR schedule, and the RNG states, in place; return state.json (the model
    loads from `path`)."""
    trainer = torch.load(path / "trainer_state.pt", weights_only=False, map_location="cpu")
    learner.optimizer.load_state_dict(trainer["optimizer"])
    if learner.schedule is not None:
        learner.schedule.load_state_dict(trainer["scheduler"])
    if data_rng is not None:
        data_rng.setstate(trainer["data_rng"])
    torch.set_rng_state(trainer["torch_rng"])
    random.setstate(trainer["python_rng"])
    return json.loads((path / "state.json").read_text())


def resume(stage: str, path: Path, learner, tracker, data_rng: random.Random | None = None) -> dict:
    """`load_state` of a stage's checkpoint, and the resume noted in the run's metrics and on the console; returns
    state.json."""
    state = load_state(path, learner, data_rng)
    if state["metrics"]:  # in case the run died between checkpointing and logging this step
        tracker.log_once(stage, state["step"], state["metrics"])
    tracker.log("resume", state["step"], {"from": str(path)})
    print(f"[{stage}] resuming after step {state['step']} from {path}")
    return state
