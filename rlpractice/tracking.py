"""Tracking: W&B (offline by default), plus metrics.jsonl and a PNG of the pass-rate curves.

metrics.jsonl is append-only: one JSON object per log call, with the stage and step.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import wandb
from omegaconf import DictConfig, OmegaConf


class Tracker:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        t = cfg.tracker
        os.environ.setdefault("WANDB_SILENT", "true")
        # One W&B run per run directory: a resumed run continues the same W&B run instead of a new one.
        id_file = run_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        self.run = wandb.init(
            project=t.project, entity=t.entity or None, name=t.name or run_dir.name, mode=t.mode,
            dir=str(run_dir), config=OmegaConf.to_container(cfg, resolve=True), tags=list(t.tags),
            id=run_id, resume="allow",
        )
        for stage in ("pretrain", "sft", "rm", "rl", "eval", "eval_no_tools"):
            self.run.define_metric(f"{stage}/step")
            self.run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")

    def logged(self, stage: str, step: int) -> dict | None:
        """The row metrics.jsonl already holds for (stage, step), if any (used when resuming)."""
        if not self.metrics_path.exists():
            return None
        rows = [r for r in read_metrics(self.metrics_path) if r["stage"] == stage and r["step"] == step]
        return rows[-1] if rows else None

    def log_once(self, stage: str, step: int, metrics: dict) -> None:
        if self.logged(stage, step) is None:
            self.log(stage, step, metrics)

    def log(self, stage: str, step: int, metrics: dict) -> None:
        row = {f"{stage}/{k}": v for k, v in metrics.items()}
        row[f"{stage}/step"] = step
        self.run.log(row)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps({"stage": stage, "step": step, **metrics}) + "\n")

    def log_table(self, stage: str, step: int, name: str, rows: list[dict]) -> None:
        """`rows` as a W&B table `stage/name` at `step` (TRL's log_completions: a few of a step's completions)."""
        if rows:
            columns = list(dict.fromkeys(k for r in rows for k in r))
            data = [[v if isinstance(v := r.get(k), (str, int, float, type(None))) else json.dumps(v) for k in columns]
                    for r in rows]
            self.run.log({f"{stage}/{name}": wandb.Table(columns=columns, data=data), f"{stage}/step": step})

    def finish(self, summary: dict) -> None:
        for k, v in summary.items():
            self.run.summary[k] = v
        self.run.finish()


def read_metrics(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_pass_rates(metrics_path: Path, out_png: Path) -> Path:
    """Left: practice-group pass rate per RL step and held-out pass@k / maj@n at each evaluation.
    Right: mean completion length per RL step (how much work the model shows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    rl = [r for r in rows if r["stage"] == "rl"]
    ev = [r for r in rows if r["stage"] == "eval"]
    fig, (ax, ax_len) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    if rl:
        ax.plot([r["step"] for r in rl], [r["pass_rate"] for r in rl], label="practice groups: pass rate",
                alpha=0.6)
        ax_len.plot([r["step"] for r in rl], [r["completions/mean_length"] for r in rl], color="tab:purple")
    for key in sorted({k for r in ev for k in r if k.startswith(("pass@", "maj@"))}):
        ax.plot([r["step"] for r in ev], [r.get(key) for r in ev], marker="o", label=f"held-out {key}")
    off = [r for r in rows if r["stage"] == "eval_no_tools"]  # a tools run: the same model with tools off
    if off:
        ax.plot([r["step"] for r in off], [r["pass@1"] for r in off], marker="x", linestyle="--",
                label="held-out pass@1, tools off")
    if any("tools/calls_per_completion" in r for r in rl):
        calls = ax_len.twinx()  # its own scale: a few calls beside tens of tokens
        calls.plot([r["step"] for r in rl], [r.get("tools/calls_per_completion", 0) for r in rl], color="tab:green")
        calls.set_ylabel("tool calls per completion", color="tab:green")
        calls.set_ylim(bottom=0)
    ax.set_xlabel("RL step (0 = after SFT)")
    ax.set_ylabel("fraction correct")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("rlpractice: pass rates")
    ax_len.set_xlabel("RL step")
    ax_len.set_ylabel("tokens")
    ax_len.set_ylim(bottom=0)
    ax_len.grid(alpha=0.3)
    ax_len.set_title("mean completion length")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
