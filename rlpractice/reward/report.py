"""After RL against a reward model: where the gold peaked while the proxy kept rising (over_optimisation.png and the
figures for summary.json), from the run's metrics."""

from __future__ import annotations

from pathlib import Path

from rlpractice.tracking import read_metrics


def over_optimisation(metrics_path: Path) -> dict:
    """Where the gold peaked and how far it fell by the end: held-out pass@1 at the evaluations, and the verifier
    pass rate of the trained-on samples per step; with the proxy and sqrt(KL) at the end."""
    rows = read_metrics(metrics_path)
    rl = [r for r in rows if r["stage"] == "rl" and "rlhf/proxy" in r]
    ev = [r for r in rows if r["stage"] == "eval"]
    out = {}
    if ev:
        best = max(ev, key=lambda r: r["pass@1"])
        out |= {"rlhf_gold_peak_step": best["step"], "rlhf_gold_peak_pass_at_1": best["pass@1"],
                "rlhf_gold_final_pass_at_1": ev[-1]["pass@1"], "rlhf_gold_fall": best["pass@1"] - ev[-1]["pass@1"]}
    if rl:
        best = max(rl, key=lambda r: r["rlhf/gold"])
        out |= {"rlhf_step_gold_peak_step": best["step"], "rlhf_step_gold_peak": best["rlhf/gold"],
                "rlhf_step_gold_final": rl[-1]["rlhf/gold"], "rlhf_proxy_first": rl[0]["rlhf/proxy"],
                "rlhf_proxy_final": rl[-1]["rlhf/proxy"], "rlhf_sqrt_kl_final": rl[-1]["rlhf/sqrt_kl"]}
    return out


def plot_over_optimisation(metrics_path: Path, out_png: Path) -> Path:
    """Proxy (reward-model score, left axis) and gold (verifier pass rate on the same samples, and held-out pass@1
    at the evaluations; right axis) against sqrt(KL) from the SFT policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    rl = [r for r in rows if r["stage"] == "rl" and "rlhf/proxy" in r]
    d = {r["step"]: r["rlhf/sqrt_kl"] for r in rl}
    ev = [r for r in rows if r["stage"] == "eval" and (r["step"] == 0 or r["step"] in d)]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    # points, not lines, for the per-step values: the KL estimate is noisy, so steps do not come in x order
    ax.plot([r["rlhf/sqrt_kl"] for r in rl], [r["rlhf/proxy"] for r in rl], color="tab:red", marker=".",
            linestyle="none", label="proxy: reward-model score, per step")
    ax.set_xlabel("sqrt(KL(policy || SFT policy)), nats^0.5 per sample")
    ax.set_ylabel("reward-model score", color="tab:red")
    ax.grid(alpha=0.3)
    gold = ax.twinx()
    gold.plot([r["rlhf/sqrt_kl"] for r in rl], [r["rlhf/gold"] for r in rl], color="tab:blue", alpha=0.4,
              marker=".", linestyle="none", label="gold: verifier pass rate of the same samples")
    gold.plot([0.0 if r["step"] == 0 else d[r["step"]] for r in ev], [r["pass@1"] for r in ev], color="tab:blue",
              marker="o", label="gold: held-out pass@1")
    gold.set_ylabel("fraction correct (verifier)", color="tab:blue")
    gold.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()[0] + gold.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], loc="lower left", fontsize=8)
    ax.set_title("RL against a learned reward: proxy vs gold")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def report(run_dir: Path, tracker) -> dict:
    """After RL against a reward model: over_optimisation.png in the run directory and in W&B, and the figures
    for summary.json."""
    png = plot_over_optimisation(run_dir / "metrics.jsonl", run_dir / "over_optimisation.png")
    import wandb

    tracker.run.log({"rlhf/proxy_vs_gold": wandb.Image(str(png))})
    return over_optimisation(run_dir / "metrics.jsonl")
