"""scripts/stats.py's intervals by hand, and compare_algorithms.py's JSON and table from made-up runs (the script
itself runs for an hour; these check what it does with the runs' summaries)."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # where the scripts import each other

import compare_algorithms  # noqa: E402
import stats  # noqa: E402
from benchmarks_doc import compare, compare_extra, markdown  # noqa: E402


def test_mean_ci_by_hand():
    # [1, 2, 3]: mean 2; sample std sqrt((1 + 0 + 1) / 2) = 1; t(0.975, 2) = 4.303; half-width 4.303 / sqrt(3) = 2.484
    mean, half = stats.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.303 / math.sqrt(3), abs=1e-3)  # 2.484
    # [0.4, 0.5]: mean 0.45, std sqrt(2 * 0.05^2 / 1) = 0.0707, t(0.975, 1) = 12.706: 12.706 * 0.0707 / sqrt(2) = 0.635
    assert stats.mean_ci([0.4, 0.5])[1] == pytest.approx(0.6353, abs=1e-3)
    assert stats.mean_ci([0.7]) == (0.7, None)  # one seed: a mean, no interval
    assert stats.mean_ci([0.3, 0.3, 0.3])[1] == 0.0
    with pytest.raises(ValueError):
        stats.mean_ci([])


def test_t_critical_matches_the_table():
    assert stats.t_critical(2) == pytest.approx(4.303, abs=1e-3)
    assert stats.t_critical(30) == pytest.approx(2.042, abs=1e-3)
    # past the table: the expansion, 2.021 at 40 and 2.000 at 60 in any t-table; the normal 1.960 far out
    assert stats.t_expansion(30) == pytest.approx(2.042, abs=1e-3)
    assert stats.t_critical(40) == pytest.approx(2.021, abs=1e-3)
    assert stats.t_critical(60) == pytest.approx(2.000, abs=1e-3)
    assert stats.t_critical(100000) == pytest.approx(1.960, abs=1e-3)
    with pytest.raises(ValueError, match="at least 2 values"):
        stats.t_critical(0)


def _summary(seed: int, sft: float, rl: float) -> dict:
    return {"sft_pass@1": sft, "rl_pass@1": rl, "sft_maj@8": sft + 0.1, "rl_maj@8": rl + 0.1, "rl_steps": 30 + seed,
            "wall_seconds": 400.4}


def test_summarise_and_render_a_configuration():
    # pass@1 after RL 0.4, 0.5, 0.6 (mean 0.5, std 0.1, half-width 4.303 * 0.1 / sqrt(3) = 0.248);
    # changes from each run's SFT 0.4-0.3, 0.5-0.3, 0.6-0.2 = 0.1, 0.2, 0.4 (mean 0.2333)
    runs = [_summary(0, 0.3, 0.4), _summary(1, 0.3, 0.5), _summary(2, 0.2, 0.6)]
    x = compare_algorithms.summarise(runs, ["pass@1", "maj@8"])
    assert x["after_rl"]["pass@1"]["mean"] == pytest.approx(0.5)
    assert x["after_rl"]["pass@1"]["half_width"] == pytest.approx(0.2484, abs=1e-3)
    assert x["change_from_sft"]["pass@1"]["values"] == pytest.approx([0.1, 0.2, 0.4])
    assert x["change_from_sft"]["pass@1"]["mean"] == pytest.approx(0.7 / 3)
    assert x["rl_steps"] == [30, 31, 32] and x["wall_seconds"] == [400, 400, 400]
    result = {"seeds": [0, 1, 2], "rl_time_budget_s": 300.0, "sft": {"pass@1": 0.3, "maj@8": 0.4},
              "results": {"passk": x}}
    head, rows = compare(result)
    assert head == ["after", "held-out pass@1", "change in pass@1", "held-out maj@8", "change in maj@8", "RL steps"]
    assert rows[0] == ["SFT (seed 0)", "0.300", "", "0.400", "", "0"]
    assert rows[1][:3] == ["pass@k", "0.500 ± 0.248", "+0.233 ± 0.379"] and rows[1][-1] == "30-32"
    lines = compare_extra(result)
    assert "| pass@k | 2 | 0.600 | 0.700 | +0.400 | 32 |" in lines
    assert markdown((head, rows))[0].startswith("| after |")


def test_eval_curve_and_plot_read_metrics_jsonl(tmp_path):
    run = tmp_path / "grpo_seed0"
    run.mkdir()
    rows = [{"stage": "eval", "step": 0, "pass@1": 0.3, "pass@8": 0.7}, {"stage": "rl", "step": 1, "pass_rate": 0.2},
            {"stage": "eval", "step": 10, "pass@1": 0.4, "pass@8": 0.72}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert compare_algorithms.eval_curve(run / "metrics.jsonl", "pass@1") == ([0, 10], [0.3, 0.4])
    compare_algorithms.plot({"grpo": [run]}, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").stat().st_size > 0


def test_arguments():
    args = compare_algorithms.parse([])
    assert (args.seeds, args.algos, args.budget, args.overrides) == (3, ["grpo", "passk"], 300.0, [])
    args = compare_algorithms.parse(["--seeds", "5", "--algos", "grpo,dr_grpo,dapo,rft,passk", "--budget", "600",
                                     "rl.prompts_per_step=16"])
    assert args.seeds == 5 and args.algos[-1] == "passk" and args.overrides == ["rl.prompts_per_step=16"]
    with pytest.raises(SystemExit):
        compare_algorithms.parse(["--algos", "grpo,ppo"])  # no conf/algo/ppo.yaml
