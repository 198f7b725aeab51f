"""`python -m rlpractice +experiment=math [key=value ...]`: run the textbook pipeline (Hydra config in conf/)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig

from rlpractice.config_schema import composition_error  # importing it registers the schema conf/ names
from rlpractice.errors import UserError


@hydra.main(config_path="pkg://rlpractice.conf", config_name="config", version_base="1.3")
def train(cfg: DictConfig) -> None:
    from rlpractice.pipeline import run  # torch and transformers load here: a config Hydra rejects fails in a blink

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    logging.captureWarnings(True)  # library warnings go where library logs go: the run's log file (hydra.job_logging)
    try:
        summary = run(cfg, run_dir)
    except UserError as e:  # the message says what to fix; a traceback would only bury it
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit(f"\ninterrupted. {_resume_hint(run_dir)}")
    except Exception:
        print(f"\nthe run stopped with an error (below). {_resume_hint(run_dir)}", file=sys.stderr, flush=True)
        raise
    print(f"\nsft pass@1 {summary['sft_pass_at_1']:.3f} -> rl pass@1 {summary['rl_pass_at_1']:.3f} "
          f"({summary['wall_seconds'] / 60:.1f} min)")
    print(f"run directory: {run_dir}")


def _resume_hint(run_dir: Path) -> str:
    args = [a for a in sys.argv[1:] if not a.startswith(("resume=", "hydra.run.dir="))]
    return ("Continue from its last checkpoint with:\n  python -m rlpractice " +
            " ".join([*args, "resume=true", f"hydra.run.dir={run_dir}"]))


def _run_dir_problem(argv: list[str]) -> str | None:
    """Hydra creates the run directory before `main` runs, and a failure there is a long traceback:
    check an explicit hydra.run.dir=... first and say what is wrong in one line."""
    for arg in argv:
        if arg.startswith("hydra.run.dir="):
            path = Path(arg.split("=", 1)[1]).absolute()
            parent = next(p for p in [path, *path.parents] if p.exists())
            if not parent.is_dir():
                return f"hydra.run.dir={path}: {parent} is a file, not a directory"
            if not os.access(parent, os.W_OK):
                return f"hydra.run.dir={path}: {parent} is not writable"
    return None


def main() -> None:
    """The command line (`python -m rlpractice`, `rlpractice`): a bad run directory or config is one line."""
    if problem := _run_dir_problem(sys.argv[1:]):
        sys.exit(f"error: {problem}; choose another hydra.run.dir")
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra then raises what it cannot compose, instead of printing it
    try:
        train()
    except HydraException as e:  # a bad key, value or group choice: composition_error says which, in one line
        sys.exit(f"error: {composition_error(e)}")


if __name__ == "__main__":  # vLLM starts worker processes with spawn: keep this guard
    main()
