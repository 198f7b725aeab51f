"""scripts/bench_vs_trl.py's figures over seeds by hand, from made-up runs (the script itself trains both trainers
for minutes per seed and needs TRL): time to the target, ratios when a seed misses it, the means and intervals,
and benchmarks_doc.py's table for the new JSON and the old one-seed one."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # where the scripts import each other

import bench_vs_trl  # noqa: E402
from benchmarks_doc import vs_trl, vs_trl_extra  # noqa: E402


def _evals(*points: tuple[float, float]) -> list[dict]:
    return [{"train_seconds": t, "pass@1": p} for t, p in points]


def test_time_to_target():
    evals = _evals((0, 0.30), (5, 0.36), (9, 0.44))
    # first at or above 0.40: 0.44 at 9 s; the line from (5, 0.36) crosses 0.40 halfway: 5 + 0.5 * 4 = 7 s
    assert bench_vs_trl.time_to(evals, 0.40) == 9
    assert bench_vs_trl.time_to_interpolated(evals, 0.40) == pytest.approx(7.0)
    assert bench_vs_trl.time_to_interpolated(evals, 0.44) == pytest.approx(9.0)  # exactly at an evaluation
    assert bench_vs_trl.time_to_interpolated(evals, 0.30) == 0.0  # the SFT checkpoint already reaches it
    assert bench_vs_trl.time_to(evals, 0.50) is None and bench_vs_trl.time_to_interpolated(evals, 0.50) is None
    # reached at the start, then a dip and a second crossing: the first time counts (0 s, not 5 + 0.5 * 4)
    assert bench_vs_trl.time_to_interpolated(_evals((0, 0.45), (5, 0.38), (9, 0.42)), 0.40) == 0.0
    assert bench_vs_trl.time_to_interpolated([], 0.40) is None


def test_summarise_one_run():
    # steps of 3 (warm-up, left out), 2, 2, 2 s: median 2 s, 32 x 32 = 1024 completions per step -> 512 samples/s
    steps = [{"step": i + 1, "seconds": s, "train_seconds": t} for i, (s, t) in enumerate([(3, 3), (2, 5), (2, 7),
                                                                                            (2, 9)])]
    evals = [{"step": 0, "pass@1": 0.30}, {"step": 2, "pass@1": 0.36}, {"step": 4, "pass@1": 0.44}]
    x = bench_vs_trl.summarise(steps, evals, 1024, 0.40)
    assert (x["steps"], x["median_step_s"], x["samples_per_s"]) == (4, 2, 512)
    assert (x["train_seconds"], x["evaluated_seconds"], x["final_pass@1"], x["best_pass@1"]) == (9, 9, 0.44, 0.44)
    assert x["seconds_to_target"] == 9 and x["seconds_to_target_interpolated"] == pytest.approx(7.0)
    assert [e["train_seconds"] for e in x["evals"]] == [0.0, 5, 9]


def _run(samples_per_s: float, t: float | None, evaluated: float = 300.0, final: float = 0.5, steps: int = 80) -> dict:
    """What summarise returns for one trainer and seed (the figures the aggregation reads)."""
    return {"steps": steps, "median_step_s": 1024 / samples_per_s, "samples_per_s": samples_per_s,
            "train_seconds": evaluated, "evaluated_seconds": evaluated, "final_pass@1": final, "best_pass@1": final,
            "seconds_to_target": None if t is None else t + 10, "seconds_to_target_interpolated": t, "evals": []}


def test_time_ratio_when_a_seed_misses_the_target():
    both = bench_vs_trl.time_ratio(_run(400, 60), _run(80, 200))
    assert both == {"ratio": pytest.approx(0.3), "at_most": None, "at_least": None}
    # only rlpractice reached it (50 s); TRL had not by its last evaluation at 310 s: the ratio is below 50 / 310
    only_ours = bench_vs_trl.time_ratio(_run(320, 50), _run(80, None, evaluated=310))
    assert only_ours == {"ratio": None, "at_most": pytest.approx(0.16129, abs=1e-5), "at_least": None}
    # only TRL reached it (200 s); rlpractice had not by 280 s: the ratio is above 280 / 200 = 1.4
    only_trl = bench_vs_trl.time_ratio(_run(320, None, evaluated=280), _run(80, 200))
    assert only_trl == {"ratio": None, "at_most": None, "at_least": pytest.approx(1.4)}
    assert bench_vs_trl.time_ratio(_run(320, None), _run(80, None)) == {"ratio": None, "at_most": None,
                                                                        "at_least": None}
    # TRL's SFT evaluation already reaches it: no ratio (0 s in the denominator)
    assert bench_vs_trl.time_ratio(_run(320, 0.0), _run(80, 0.0))["ratio"] is None
    # at the eval points instead of interpolated: (60 + 10) / (200 + 10)
    assert bench_vs_trl.time_ratio(_run(400, 60), _run(80, 200), "seconds_to_target")["ratio"] == pytest.approx(1 / 3)


def test_partial_summary():
    # [0.3, 0.4] of three seeds: mean 0.35, std sqrt(2 * 0.05^2 / 1) = 0.0707, half-width 12.706 * 0.0707 / sqrt(2)
    # = 12.706 * 0.05 = 0.6353
    s = bench_vs_trl.partial_summary([0.3, 0.4, None])
    assert s["mean"] == pytest.approx(0.35) and s["half_width"] == pytest.approx(0.6353, abs=1e-4)
    assert s["values"] == [0.3, 0.4, None] and s["n"] == 2
    assert bench_vs_trl.partial_summary([None, 7.0, None]) == {"mean": 7.0, "half_width": None,
                                                               "values": [None, 7.0, None], "n": 1}
    assert bench_vs_trl.partial_summary([None, None]) == {"mean": None, "half_width": None, "values": [None, None],
                                                          "n": 0}


def _three_seeds() -> list[dict]:
    # seed 0: 400 vs 80 samples/s (5x), 60 vs 200 s (0.3x); seed 1: 360 vs 90 (4x), 92 vs 230 s (0.4x);
    # seed 2: 320 vs 80 (4x), rlpractice 44 s, TRL misses the target by its last evaluation at 310 s (< 0.14x)
    pairs = [(_run(400, 60, final=0.55, steps=90), _run(80, 200, final=0.42, steps=20)),
             (_run(360, 92, final=0.50, steps=85), _run(90, 230, final=0.41, steps=21)),
             (_run(320, 44, final=0.45, steps=80), _run(80, None, evaluated=310, final=0.38, steps=20))]
    return [bench_vs_trl.seed_result(s, ours, trl) for s, (ours, trl) in enumerate(pairs)]


def test_aggregate_over_seeds():
    runs = _three_seeds()
    assert [r["samples_per_s_ratio"] for r in runs] == pytest.approx([5.0, 4.0, 4.0])
    assert runs[2]["time_to_target_ratio_interpolated"] is None
    assert runs[2]["time_to_target_ratio_at_most"] == pytest.approx(44 / 310)
    x = bench_vs_trl.aggregate(runs)
    # samples/s ratios 5, 4, 4: mean 4.333, std sqrt((0.667^2 + 2 * 0.333^2) / 2) = 0.5774, half-width
    # 4.303 * 0.5774 / sqrt(3) = 1.434
    assert x["samples_per_s_ratio"]["mean"] == pytest.approx(13 / 3)
    assert x["samples_per_s_ratio"]["half_width"] == pytest.approx(1.434, abs=1e-3)
    # time ratios 0.3 and 0.4 where both reached the target (seed 2 left out): mean 0.35, half-width 0.6353
    t = x["time_to_target_ratio_interpolated"]
    assert (t["n"], t["values"][:2], t["values"][2]) == (2, pytest.approx([0.3, 0.4]), None)
    assert t["mean"] == pytest.approx(0.35) and t["half_width"] == pytest.approx(0.6353, abs=1e-4)
    # rlpractice 400, 360, 320 samples/s: mean 360, std 40, half-width 4.303 * 40 / sqrt(3) = 99.37
    ours, trl = x["rlpractice"], x["trl"]
    assert ours["samples_per_s"]["mean"] == pytest.approx(360)
    assert ours["samples_per_s"]["half_width"] == pytest.approx(99.37, abs=1e-2)
    # rlpractice reached the target in all three seeds (60, 92, 44 s: mean 65.33, std sqrt((5.33^2 + 26.67^2 +
    # 21.33^2) / 2) = 24.44, half-width 4.303 * 24.44 / sqrt(3) = 60.72); TRL in two (200, 230 s: mean 215, std
    # 21.21, half-width 12.706 * 21.21 / sqrt(2) = 190.6)
    assert ours["seconds_to_target_interpolated"]["n"] == 3
    assert ours["seconds_to_target_interpolated"]["mean"] == pytest.approx(196 / 3)
    assert ours["seconds_to_target_interpolated"]["half_width"] == pytest.approx(60.72, abs=1e-2)
    assert trl["seconds_to_target_interpolated"]["n"] == 2
    assert trl["seconds_to_target_interpolated"]["mean"] == pytest.approx(215)
    assert trl["seconds_to_target_interpolated"]["half_width"] == pytest.approx(190.59, abs=1e-2)
    assert trl["final_pass@1"]["mean"] == pytest.approx((0.42 + 0.41 + 0.38) / 3)
    assert ours["steps"] == [90, 85, 80] and trl["train_seconds"] == [300, 300, 310]


def _result(runs: list[dict]) -> dict:
    setup = {"sft_checkpoint": "<sft-checkpoint>", "budget_s": 300.0, "target_pass@1": 0.4, "prompts_per_step": 32,
             "samples_per_prompt": 32, "trl_micro_batch": 64, "eval_every": 5}
    return {"script": "bench_vs_trl.py", "setup": setup, "seeds": [r["seed"] for r in runs],
            **bench_vs_trl.aggregate(runs), "runs": runs}


def test_render_over_seeds():
    r = json.loads(json.dumps(_result(_three_seeds())))  # through JSON, as benchmarks_doc reads it
    head, rows = vs_trl(r)
    assert head[:4] == ["", "samples/s", "seconds to held-out pass@1 0.4, interpolated", "seeds that reached it"]
    assert rows[0][:4] == ["rlpractice / TRL", "**4.33x** ± 1.43", "**0.35x** ± 0.64 (seeds where both reached it)",
                           "both: 2 of 3"]
    assert rows[1][:5] == ["rlpractice", "360 ± 99", "65 ± 61 s", "3 of 3", "0.500 ± 0.124"]
    assert rows[2][2:4] == ["215 ± 191 s", "2 of 3"] and rows[2][-1] == "20-21"
    extra = vs_trl_extra(r)
    assert extra[0].startswith("Mean ± half-width of the 95% Student-t interval over seeds 0, 1, 2")
    assert "| 0 | 400 / 80 | **5.00x** | 60 s (70 s) / 200 s (210 s) | 0.30x | 0.550 / 0.420 | 90 / 20 |" in extra
    assert "| 2 | 320 / 80 | **4.00x** | 44 s (54 s) / > 310 s | < 0.14x | 0.450 / 0.380 | 80 / 20 |" in extra


def test_render_one_seed_and_no_seed_reaching_the_target():
    runs = [bench_vs_trl.seed_result(0, _run(400, None, evaluated=290), _run(80, None, evaluated=310))]
    head, rows = vs_trl(json.loads(json.dumps(_result(runs))))
    assert rows[0][1:4] == ["**5.00x**", "- (seeds where both reached it)", "both: 0 of 1"]
    assert rows[1][1:4] == ["400", "-", "0 of 1"]
    assert "| 0 | 400 / 80 | **5.00x** | > 290 s / > 310 s | - | 0.500 / 0.500 | 80 / 80 |" in vs_trl_extra(
        _result(runs))


def test_render_the_old_one_seed_json():
    r = json.loads((ROOT / "tests" / "data" / "vs_trl_one_seed.json").read_text())
    assert "seeds" not in r  # written before --seeds
    head, rows = vs_trl(r)
    assert rows[0][:2] == ["rlpractice / TRL", "**5.39x**"] and rows[1][0] == "rlpractice"
    assert "One seed and no interval" in vs_trl_extra(r)[0]


def test_arguments_and_help_without_trl():
    args = bench_vs_trl.parse([])
    assert (args.seeds, args.budget, args.target, args.sft) == (3, 300.0, 0.40, None)
    assert bench_vs_trl.parse(["--seeds", "5", "--sft", "x"]).seeds == 5
    with pytest.raises(SystemExit):
        bench_vs_trl.parse(["--seeds", "0"])
    # --help with trl, transformers and torch unimportable: argument parsing needs none of them
    code = ("import runpy, sys; sys.path.insert(0, 'scripts'); sys.modules.update(trl=None, transformers=None, "
            "torch=None); sys.argv = ['bench_vs_trl.py', '--help']; "
            "runpy.run_path('scripts/bench_vs_trl.py', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--seeds" in out.stdout


def test_main_reuses_finished_runs(tmp_path, monkeypatch, capsys):
    """The whole script over finished runs of 2 seeds in the per-seed folders: nothing trains, the JSON and the
    table come out (what a resumed benchmark does once every run is there)."""
    out = tmp_path / "vs_trl"
    for seed, (ours_step_s, trl_step_s) in enumerate([(2.0, 10.0), (2.5, 10.0)]):
        run = out / f"seed{seed}" / "rlpractice"
        run.mkdir(parents=True)
        (run / "summary.json").write_text("{}")  # finished: run_trainer does not start it again
        rows = [{"stage": "eval", "step": 0, "pass@1": 0.30}]
        for step in range(1, 11):
            rows.append({"stage": "rl", "step": step, "time/step": ours_step_s})
            if step % 5 == 0:
                rows.append({"stage": "eval", "step": step, "pass@1": 0.30 + 0.03 * step})
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        trl = out / f"seed{seed}" / "trl"
        trl.mkdir()
        (trl / "steps.json").write_text(json.dumps([{"step": i, "seconds": trl_step_s, "train_seconds": trl_step_s * i}
                                                    for i in range(1, 6)]))
        (trl / "evals.json").write_text(json.dumps([{"step": 0, "pass@1": 0.30}, {"step": 5, "pass@1": 0.38}]))
    monkeypatch.setattr(bench_vs_trl, "OUT", out)
    monkeypatch.setattr(bench_vs_trl, "meta", lambda: {"script": "bench_vs_trl.py"})
    monkeypatch.setattr(bench_vs_trl.subprocess, "run", lambda *a, **k: pytest.fail(f"started {a}"))
    bench_vs_trl.main(["--sft", str(tmp_path / "sft"), "--seeds", "2", "--prompts", "4", "--group", "5"])
    r = json.loads((tmp_path / "vs_trl.json").read_text())
    assert r["seeds"] == [0, 1] and [x["seed"] for x in r["runs"]] == [0, 1]
    # 20 completions per step: 20 / 2 = 10 and 20 / 2.5 = 8 samples/s against TRL's 20 / 10 = 2 (ratios 5 and 4)
    assert r["rlpractice"]["samples_per_s"]["values"] == pytest.approx([10, 8])
    assert r["samples_per_s_ratio"]["values"] == pytest.approx([5, 4])
    # rlpractice: 0.30 at 0 s, 0.45 at step 5 (10 s; 12.5 s for seed 1): 0.40 two thirds of the way, 6.67 s and
    # 8.33 s; TRL never reaches 0.40 (0.38 at its last evaluation, 50 s): ratios below 6.67 / 50 and 8.33 / 50
    assert r["rlpractice"]["seconds_to_target_interpolated"]["values"] == pytest.approx([20 / 3, 25 / 3])
    assert r["trl"]["seconds_to_target_interpolated"] == {"mean": None, "half_width": None, "values": [None, None],
                                                          "n": 0}
    assert [x["time_to_target_ratio_at_most"] for x in r["runs"]] == pytest.approx([2 / 15, 1 / 6])
    assert "| rlpractice / TRL | **4.50x** ± 6.35 |" in capsys.readouterr().out
