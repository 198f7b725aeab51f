"""Write docs/benchmarks.md from the benchmark results in docs/benchmarks/*.json: one section per result, ratios
first (they hold across machines), absolute figures beside them, then the commit, the machine and the command.

    .venv/bin/python scripts/benchmarks_doc.py [--results docs/benchmarks] [--out docs/benchmarks.md]

To refresh a figure: run the benchmark (it writes runs/bench/<name>.json or runs/compare/compare.json with its
commit, machine and command, see bench_meta.py), copy that file over the one in docs/benchmarks/, run this.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
Table = tuple[list[str], list[list[str]]]


def num(x: object, digits: int = 2) -> str:
    """A figure as text: thousands separated, `-` when the result does not hold it."""
    if x is None:
        return "-"
    if isinstance(x, int) or (isinstance(x, float) and x >= 1000):
        return f"{x:,.0f}"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def ratio(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"**{x:.{digits}f}x**"


def seconds(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f} s"


def markdown(table: Table) -> list[str]:
    head, rows = table
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def sampling(r: dict) -> Table:
    t = r["tokens_per_second"]
    hf = {k: v for k, v in t.items() if k.startswith("hf_generate")}
    best = max(hf, key=hf.get) if hf else None
    hf_name = best.replace("hf_generate_", "").replace("_bfloat16", ", bf16").replace("_", " ") if best else "-"
    head = ["actors / best HF `generate`", "actors / same engines without Ray", "actors / one raw engine",
            "actors (tokens/s)", "raw vLLM, same engines", "raw vLLM, one engine", f"best HF ({hf_name})"]
    return head, [[ratio(r["ratio_actors_vs_hf_generate"]), ratio(r["ratio_actors_vs_raw_vllm"]),
                   ratio(r["ratio_actors_vs_one_raw_engine"]), num(t["rlpractice_ray_actors"]),
                   num(t.get("raw_vllm_same_engines")), num(t["raw_vllm_one_engine"]), num(hf.get(best))]]


def sampling_extra(r: dict) -> list[str]:
    s, e = r["setup"], r["setup"].get("engine", {})
    lines = [f"{s['prompts']} prompts x {s['samples_per_prompt']} samples, at most {s['tokens_per_sample']} tokens, "
             f"{'ending at end-of-text' if r['completions_end_at_eos'] else 'forced to full length'}, "
             f"{'with' if r['vllm_logprobs'] else 'without'} log-probs; {s['engines']} engine(s) of "
             f"{s['cpus_per_engine']} core(s), {e.get('dtype', '?')}, "
             f"{'eager' if e.get('enforce_eager') else 'torch.compile'}, max_num_seqs {e.get('max_num_seqs', '?')}, "
             f"block_size {e.get('block_size', '?')}; model {s['params']} parameters."]
    if r.get("actor_engine_start_s"):
        lines.append(f"Engine start inside the actors: {', '.join(f'{x} s' for x in r['actor_engine_start_s'])}.")
    return lines


def step(r: dict) -> Table:
    head = ["mode", "step / synchronous step", "step", "sample", "grade", "wait", "learn", "sync", "held-out pass@1"]
    rows = []
    modes = (("sync", "synchronous (`rl.max_staleness=0`)"), ("overlap", "overlapped (`rl.max_staleness=1`)"))
    for mode, label in modes:
        m = r[mode]["median_s"]
        rel = 1.0 if mode == "sync" else 1 / r["overlap_speedup"]
        rows.append([label, ratio(rel), *(seconds(m[k]) for k in ("step", "sample", "grade", "wait", "learn", "sync")),
                     num(r[mode].get("rl_pass_at_1"), 3)])
    return head, rows


def step_extra(r: dict) -> list[str]:
    return [f"Medians per step over {r['rl_budget_s']:.0f} s of RL from one SFT checkpoint. Trainer overhead of the "
            f"synchronous step over its parts: {r['sync_overhead']:+.1%}. Overlapped, the step is "
            f"{r['overlap_step_over_max_component']:.2f}x max(sample + grade, learn + sync) of its own parts and "
            f"{r['overlap_step_over_max_sync_component']:.2f}x that of the synchronous parts: fully overlapped, "
            "but the engines and the learner slow each other down when they share the cores; its sync waits in the "
            "engines' queue behind the next generation."]


def mean_pm(s: dict, digits: int = 0, unit: str = "") -> str:
    """A mean with the half-width of its 95% interval (none for one value), `-` without a mean."""
    if s["mean"] is None:
        return "-"
    half = "" if s["half_width"] is None else f" ± {s['half_width']:.{digits}f}"
    return f"{s['mean']:.{digits}f}{half}{unit}"


def ratio_pm(s: dict, digits: int = 2) -> str:
    return "-" if s["mean"] is None else \
        f"**{s['mean']:.{digits}f}x**" + ("" if s["half_width"] is None else f" ± {s['half_width']:.{digits}f}")


def span(values: list) -> str:
    return f"{min(values)}-{max(values)}" if min(values) != max(values) else str(values[0])


VS_TRL_NAMES = (("rlpractice", "rlpractice"), ("trl", "TRL `GRPOTrainer`"))


def vs_trl(r: dict) -> Table:
    """vs_trl.json over seeds: means ± half-widths; the ratios are the means of the per-seed ratios."""
    if "seeds" not in r:
        return vs_trl_one_seed(r)
    target, n = r["setup"]["target_pass@1"], len(r["seeds"])
    head = ["", "samples/s", f"seconds to held-out pass@1 {target}, interpolated", "seeds that reached it",
            "held-out pass@1 after the budget", "step (median)", "steps in the budget"]
    t = r["time_to_target_ratio_interpolated"]
    rows = [["rlpractice / TRL", ratio_pm(r["samples_per_s_ratio"]),
             f"{ratio_pm(t)} (seeds where both reached it)", f"both: {t['n']} of {n}", "", "", ""]]
    for name, label in VS_TRL_NAMES:
        x = r[name]
        rows.append([label, mean_pm(x["samples_per_s"]), mean_pm(x["seconds_to_target_interpolated"], unit=" s"),
                     f"{x['seconds_to_target_interpolated']['n']} of {n}", mean_pm(x["final_pass@1"], 3),
                     mean_pm(x["median_step_s"], 2, " s"), span(x["steps"])])
    return head, rows


def seed_time(x: dict) -> str:
    """One run's seconds to the target, interpolated (at an eval point); `> S s` when it missed it."""
    if x["seconds_to_target_interpolated"] is None:
        return f"> {x['evaluated_seconds']:.0f} s"
    return f"{x['seconds_to_target_interpolated']:.0f} s ({num(x['seconds_to_target'], 0)} s)"


def seed_time_ratio(run: dict) -> str:
    for key, sign in (("time_to_target_ratio_interpolated", ""), ("time_to_target_ratio_at_most", "< "),
                      ("time_to_target_ratio_at_least", "> ")):
        if run.get(key) is not None:
            return f"{sign}{run[key]:.2f}x"
    return "-"


def vs_trl_extra(r: dict) -> list[str]:
    """The setting, how a missed target counts, and the per-seed figures under the table of means."""
    if "seeds" not in r:
        return vs_trl_extra_one_seed(r)
    s = r["setup"]
    return [f"Mean ± half-width of the 95% Student-t interval over seeds {', '.join(map(str, r['seeds']))}; each seed "
            f"runs both trainers from one SFT checkpoint, {s['budget_s']:.0f} s of training each, "
            f"{s['prompts_per_step']} problems x {s['samples_per_prompt']} samples per optimizer step, target held-out "
            f"pass@1 {s['target_pass@1']}. The ratios are the means of the per-seed ratios. A run that misses the "
            "target shows `> S s` (S: its training seconds at its last evaluation); the time to the target is the mean "
            "over the seeds that reached it, the time ratio over the seeds where both did; a seed where only one did "
            "bounds its ratio (`<` or `>`) and is left out of the mean. Per seed, rlpractice / TRL:", "",
            *markdown((["seed", "samples/s", "ratio", f"seconds to pass@1 {s['target_pass@1']}, interpolated (at an "
                        "eval point)", "time ratio", "held-out pass@1 after the budget", "steps"],
                       [[str(run["seed"]),
                         f"{run['rlpractice']['samples_per_s']:.0f} / {run['trl']['samples_per_s']:.0f}",
                         ratio(run["samples_per_s_ratio"]),
                         f"{seed_time(run['rlpractice'])} / {seed_time(run['trl'])}", seed_time_ratio(run),
                         f"{run['rlpractice']['final_pass@1']:.3f} / {run['trl']['final_pass@1']:.3f}",
                         f"{run['rlpractice']['steps']} / {run['trl']['steps']}"] for run in r["runs"]]))]


def vs_trl_one_seed(r: dict) -> Table:
    """vs_trl.json as the script wrote it before `--seeds`: one seed per trainer, no interval."""
    target = r["setup"]["target_pass@1"]
    head = ["", "samples/s", f"seconds to held-out pass@1 {target}, interpolated (at an eval point)",
            "step (median)", "steps in the budget", "final pass@1"]
    at_eval = r["time_to_target_ratio"] or r["time_to_target_ratio_at_most"]
    rows = [["rlpractice / TRL", ratio(r["samples_per_s_ratio"]),
             f"{ratio(r['time_to_target_ratio_interpolated'])} ({num(at_eval)}x)", "", "", ""]]
    for name, label in (("rlpractice", "rlpractice"), ("trl", "TRL `GRPOTrainer`")):
        x = r[name]
        rows.append([label, num(x["samples_per_s"], 0),
                     f"{num(x['seconds_to_target_interpolated'], 0)} s ({num(x['seconds_to_target'], 0)} s)",
                     seconds(x["median_step_s"]), num(x["steps"]), num(x["final_pass@1"], 3)])
    return head, rows


def vs_trl_extra_one_seed(r: dict) -> list[str]:
    s = r["setup"]
    curve = ", ".join(f"{a['pass@1']:.3f} / {b['pass@1']:.3f} after {a['step']}"
                      for a, b in zip(r["rlpractice"]["evals"], r["trl"]["evals"], strict=False) if a["step"] > 0)
    return [f"Both from one SFT checkpoint, {s['budget_s']:.0f} s of training each, {s['prompts_per_step']} problems x "
            f"{s['samples_per_prompt']} samples per optimizer step, target held-out pass@1 {s['target_pass@1']}. "
            f"Held-out pass@1 per step, rlpractice / TRL: {curve} steps (the two learn about the same per step; the "
            "difference is the step time). One seed and no interval: a result from before `--seeds` "
            "(scripts/bench_vs_trl.py)."]


LEARNER_RATIOS = {"bf16_over_fp32_rl_shared": "RL, bf16 over fp32",
                  "shared_over_collate_fp32": "RL fp32, shared over collate",
                  "shared_over_collate_bf16": "RL bf16, shared over collate"}


def learner(r: dict) -> Table:
    if r.get("mode") == "default":  # bench_learner.py --mode default: old vs new learner on the default update
        return (["new / old learner (speed)", "old (s)", "new (s)", "torch.matmul roofline (GFLOP/s)",
                 "oneDNN matmul (GFLOP/s)", "achieved, old / new (GFLOP/s)", "largest gradient gap"],
                [[ratio(r["speedup_new_over_old"]), num(r["step_s_old"]), num(r["step_s_new"]),
                  num(r["matmul_roofline_gflops"], 0), num(r["onednn_matmul_gflops"], 0),
                  f"{r['achieved_gflops_old']:.0f} / {r['achieved_gflops_new']:.0f}", f"{r['max_gradient_gap']:.0e}"]])
    names = sorted({k for size in r["sizes"].values() for k in size["settings"]})
    ratios = [k for k in LEARNER_RATIOS if any(k in size["ratios"] for size in r["sizes"].values())]
    head = ["model", *(f"{LEARNER_RATIOS[k]} (speed)" for k in ratios),
            *(f"{k.replace('_', ' ').replace('rl', 'RL').replace('sft', 'SFT')} (s)" for k in names),
            "peak memory, RL bf16 (GB)"]
    rows = []
    for size, x in r["sizes"].items():
        st = x["settings"]
        rows.append([size, *(ratio(x["ratios"].get(k)) for k in ratios),
                     *(num(st.get(k, {}).get("step_s")) for k in names),
                     num(st.get("rl_bf16_shared", {}).get("peak_memory_gb"), 1)])
    return head, rows


def learner_extra(r: dict) -> list[str]:
    a = r["args"]
    if r.get("mode") == "default":
        share = {k: f"{v:.0%}" for k, v in r["profile"]["new"]["fraction"].items()}
        return [f"The default RL update ({r['sequences']} learned sequences) by the learner of commit {a['baseline']} "
                f"and the current one, {a['repeats']} back-to-back pairs, {r['threads']} threads; load average "
                f"{r['load_average_before_after'][0]:.1f} before, {r['load_average_before_after'][1]:.1f} after. "
                f"Where the new update's time goes: {', '.join(f'{k} {v}' for k, v in share.items())}."]
    return [f"One RL update and one SFT step on {a['prompts'] * a['group']} random samples ({a['prompts']} prompts x "
            f"{a['group']}, prompt {a['prompt_len']} tokens, completions {a['completion_len'] // 2}-"
            f"{a['completion_len']}, token budget {a['token_budget']}), median of {a['repeats']}; device "
            f"{r['device']}. `shared`: each group's prompt runs once per micro-batch; `collate`: every sample "
            "recomputes its prompt."]


def weight_sync(r: dict) -> Table:
    head = ["model", "cuda_ipc speed-up", "filesystem (s)", "cuda_ipc (s)"]
    return head, [[size, ratio(x["ipc_speedup"], 0), num(x["filesystem_s"]), num(x["cuda_ipc_s"], 3)]
                  for size, x in r["sizes"].items()]


def verifiers(r: dict) -> Table:
    head = ["grader", "throughput, rlpractice over it", f"accuracy ({r['cases']} cases)",
            "gradings/s (ordinary cases)", "timeouts"]
    ours = r["rlpractice"]["ordinary"]["gradings_per_s"]
    rows = []
    for name, label in (("rlpractice", "rlpractice `math`"), ("math_verify", "Math-Verify, called as its README shows"),
                        ("math_verify_on_extracted", "Math-Verify on the answer rlpractice extracts")):
        x = r[name]
        rows.append([label, ratio(ours / x["ordinary"]["gradings_per_s"], 1), num(x["all"]["accuracy"], 3),
                     num(x["ordinary"]["gradings_per_s"], 0), num(x["all"]["timeouts"])])
    return head, rows


ALGO_NAMES = {"sft": "SFT", "grpo": "GRPO", "dr_grpo": "Dr. GRPO", "dapo": "DAPO", "rft": "RFT", "gspo": "GSPO",
              "rloo": "RLOO", "passk": "pass@k"}


def pm(s: dict, sign: str = "") -> str:
    """A compare.json metric: mean ± the half-width of its 95% Student-t interval over seeds (one seed: the mean)."""
    return f"{s['mean']:{sign}.3f}" + ("" if s["half_width"] is None else f" ± {s['half_width']:.3f}")


def compare(r: dict) -> Table:
    if "seeds" not in r:
        return compare_one_seed(r)
    metrics = list(r["sft"])
    head = ["after", *[h for m in metrics for h in (f"held-out {m}", f"change in {m}")], "RL steps"]
    rows = [["SFT (seed 0)", *[c for m in metrics for c in (f"{r['sft'][m]:.3f}", "")], "0"]]
    for k, x in r["results"].items():
        steps = x["rl_steps"]
        rows.append([ALGO_NAMES.get(k, k), *[c for m in metrics for c in (pm(x["after_rl"][m]),
                                                                            pm(x["change_from_sft"][m], "+"))],
                     f"{min(steps)}-{max(steps)}" if min(steps) != max(steps) else str(steps[0])])
    return head, rows


def budget(r: dict) -> str:
    return f"{r['rl_steps']} RL steps" if r.get("rl_steps") else f"RL wall budget {r['rl_time_budget_s']:g} s"


def compare_extra(r: dict) -> list[str]:
    """The per-seed figures under the table of means."""
    if "seeds" not in r:
        return ["One seed and no interval: a result from before `--seeds` (scripts/compare_algorithms.py)."]
    metrics, seeds = list(r["sft"]), r["seeds"]
    return [f"Mean ± half-width of the 95% Student-t interval over seeds {', '.join(map(str, seeds))} (the SFT "
            f"checkpoint is shared; the change is each run's own, against its evaluation of that checkpoint at step "
            f"0); {budget(r)} per run; curves: `{r.get('plot', 'compare.png')}` beside "
            "the JSON. Per seed:", "",
            *markdown((["configuration", "seed", *[f"held-out {m}" for m in metrics], "change in pass@1", "RL steps"],
                       [[ALGO_NAMES.get(k, k), str(seed), *[f"{x['after_rl'][m]['values'][i]:.3f}" for m in metrics],
                         f"{x['change_from_sft']['pass@1']['values'][i]:+.3f}", str(x["rl_steps"][i])]
                        for k, x in r["results"].items() for i, seed in enumerate(seeds)]))]


def compare_one_seed(r: dict) -> Table:
    """compare.json as the script wrote it before `--seeds`: one run per algorithm, no interval."""
    head = ["after", "gain in held-out pass@1 over SFT", "held-out pass@1", "maj@8", "RL steps"]
    sft = r["results"]["sft"]["pass@1"]
    return head, [[ALGO_NAMES.get(k, k), "" if k == "sft" else f"{x['pass@1'] - sft:+.3f}", num(x["pass@1"], 3),
                   num(x.get("maj@8"), 3), num(x["rl_steps"])] for k, x in r["results"].items()]


def gpu_check(r: dict) -> Table:
    return ["CUDA bf16 vs CPU fp32, relative gap", "value"], [[k.replace("_", " "), f"{v:.0e}" if v < 0.001 else
                                                              f"{v:.3f}"] for k, v in r["relative_gap"].items()]


def reward_model(r: dict) -> Table:
    h, t = r["heldout"], r["throughput"]
    return (["held-out pair accuracy / target", "held-out pair accuracy", "slip", "wrong answer", "bare guess",
             "scoring 1,024 x 64 tokens"],
            [[ratio(h["accuracy"] / r["target_heldout_accuracy"]), f"{h['accuracy']:.3f}",
              f"{h['accuracy/slip']:.3f}", f"{h['accuracy/wrong_answer']:.3f}", f"{h['accuracy/bare_guess']:.3f}",
              f"{t['score_ids_64_tokens']['samples_per_s']:,.0f} samples/s"]])


def tools(r: dict) -> Table:
    return (["tool rollouts / plain sampling (sampled tokens/s)", "counting tool ids", "plain (tokens/s)",
             "with tools (sampled tokens/s)", "calls per completion"],
            [[ratio(r["ratio_sampled_tokens_per_s"]), ratio(r["ratio_completion_ids_per_s"]),
              f"{r['plain_tokens_per_s']:,.0f}", f"{r['tools_sampled_tokens_per_s']:,.0f}",
              f"{r['tool_calls_per_completion']:.1f}"]])


def episodes(r: dict) -> Table:
    return (["episodes / plain sampling (sampled tokens/s)", "plain (tokens/s)", "episodes (sampled tokens/s)",
             "turns per episode", "observation ids"],
            [[ratio(r["ratio_sampled_tokens_per_s"]), f"{r['plain_tokens_per_s']:,.0f}",
              f"{r['episodes_sampled_tokens_per_s']:,.0f}", f"{r['turns_per_episode']:.2f}",
              f"{r['observation_id_share']:.0%}"]])


def learner_ranks(r: dict) -> Table:
    return (["ranks / one process (step time)", "one process", f"{r['ranks']} ranks", "gather full weights",
             "largest weight gap after a step", "batch"],
            [[ratio(r["ratio_ranks_over_one"]), seconds(r["step_one_process_s"]), seconds(r["step_ranks_s"]),
              seconds(r["gather_full_weights_s"]), f"{r['max_weight_gap_after_one_step']:.1e}",
              f"{r['sequences']:,} sequences, {r['tokens']:,} tokens"]])


def experiment(r: dict) -> Table:
    head = ["experiment", "held-out pass@1 after SFT", "after RL", "RL steps", "wall time"]
    row = [f"`+experiment={r['experiment']}`", f"{r['sft_pass_at_1']:.3f}", f"**{r['rl_pass_at_1']:.3f}**",
           str(r["rl_steps"]), f"{r['wall_seconds'] / 60:.1f} min"]
    if "rl_pass_at_1_no_tools" in r:
        head += ["tools off: after SFT", "after RL", "correct answers that used a tool"]
        row += [f"{r['sft_pass_at_1_no_tools']:.3f}", f"{r['rl_pass_at_1_no_tools']:.3f}",
                f"{r.get('rl_tools/correct_with_tool', 0):.0%}"]
    if "rl_success_within_2_attempts" in r:  # an environment with attempts: retrying vs sampling again
        head += ["after RL: right within 2 attempts", "2 independent samples (pass@2)", "after SFT: within 2",
                 "pass@2"]
        row += [f"**{r['rl_success_within_2_attempts']:.3f}**", f"{r['rl_independent_pass@2']:.3f}",
                f"{r['sft_success_within_2_attempts']:.3f}", f"{r['sft_independent_pass@2']:.3f}"]
    return head, [row]


def settings(r: dict) -> Table:
    head = ["setting", "step / fastest", "step (median)", "sample", "learn", "engines", "dtype", "sampler_is",
            "linear layers"]
    rows = []
    for name, x in r["results"].items():
        s, m = x["settings"], x["median_s"]
        label = f"{name} (= {x['same_as']})" if x.get("same_as") else name
        rows.append([label, ratio(x["step_over_fastest"]), seconds(m["step"]), seconds(m["sample"]),
                     seconds(m["learn"]), f"{s['sampler.num_samplers']} x {s['sampler.num_cpus_per_sampler']} core(s)",
                     s["sampler.engine.dtype"], "on" if s["algo.sampler_is"] else "off", s["learner.cpu_linear"]])
    return head, rows


def settings_extra(r: dict) -> list[str]:
    return [f"Fastest: {r['fastest']}. `auto` picked {ratio(r['auto_over_fastest'])} of the fastest step; the other "
            f"CPU kind's `auto` (the probe told the opposite about native bf16) {ratio(r['other_kind_over_fastest'])}. "
            f"Median over RL steps 2..{r['steps_per_run']} of each run, all from one SFT checkpoint."]


SECTIONS: dict[str, tuple[str, Callable[[dict], Table], Callable[[dict], list[str]] | None]] = {
    "bench_settings.py": ("Hardware settings: the RL step under each candidate engine dtype, engine layout and "
                          "learner path, and what `auto` picks on this machine", settings, settings_extra),
    "bench_sampling.py": ("Sampling throughput: rlpractice's Ray sampler actors vs the same vLLM engines without Ray "
                          "and HF `generate` (TRL's generation without vLLM), same model, prompts and settings",
                          sampling, sampling_extra),
    "bench_step.py": ("One RL step of the default run split into its parts, synchronous and overlapped", step,
                      step_extra),
    "bench_vs_trl.py": ("rlpractice vs TRL's `GRPOTrainer` on the same work (settings matched: see the script's "
                        "docstring)", vs_trl, vs_trl_extra),
    "bench_learner.py": ("The learner alone: one RL update and one SFT step per model size, precision and forward "
                         "path", learner, learner_extra),
    "bench_learner_ranks.py": ("The learner on N ranks (FSDP2 over gloo, Ray actors) vs one process on the same "
                               "RL batch and the same cores", learner_ranks, None),
    "bench_weight_sync.py": ("One weight sync into a receiving process on the same GPU: a checkpoint through the disk "
                             "vs CUDA IPC handles (the transport, without vLLM's load_weights)", weight_sync, None),
    "bench_verifiers.py": ("rlpractice's math verifier vs Math-Verify on tests/verifier_corpus.jsonl, one process "
                           "each, a hard 5 s limit per case", verifiers, None),
    "compare_algorithms.py": ("Held-out pass@1, pass@8 and maj@8 after each RL configuration from one SFT checkpoint, "
                              "same samples per step and RL wall budget, over several seeds", compare, compare_extra),
    "check_gpu_learner.py": ("The learner on CUDA (bf16 autocast) against the CPU (fp32): one SFT and one GRPO step",
                             gpu_check, None),
    "bench_reward_model.py": ("The reward model on the built-in preference pairs: held-out pair accuracy by kind of "
                              "rejected solution, and batch scoring speed", reward_model, None),
    "bench_experiment.py": ("A whole experiment as a user runs it (held-out pass@1 at temperature 1, 8 samples per "
                            "problem)", experiment, None),
    "bench_tools.py": ("Tool rollouts (calculator, stop-run-continue in the engines) vs plain sampling, same engines, "
                       "prompts and number of generated tokens", tools, None),
    "bench_episodes.py": ("Check-and-retry episodes (grade, answer back, continue in the engines) vs plain "
                          "sampling, same engines and problems", episodes, None),
}


def machine(m: dict) -> str:
    bf16 = None if "native_bf16" not in m else \
        ("native bf16" if m["native_bf16"] else "no native bf16") + f" (flags: {' '.join(m.get('flags') or []) or '-'})"
    parts = [f"{m['cores']} cores" if m.get("cores") else None, m.get("cpu"), bf16,
             f"GPU: {m['gpu']}" if m.get("gpu") else ("no GPU" if m.get("cpu") else None)]
    return ", ".join(p for p in parts if p) or "not recorded"


def shell(argv: list[str]) -> str:
    """The command as one would type it; `<placeholders>` stay readable."""
    return " ".join(a if re.fullmatch(r"[\w@%+=:,./<>-]+", a) else shlex.quote(a) for a in argv)


def provenance(r: dict) -> str:
    cmd = ".venv/bin/python " + shell(r["command"]) if r.get("command") else "not recorded"
    line = f"Commit `{r.get('commit') or '?'}`; {machine(r.get('machine') or {})}; `{cmd}`."
    if r.get("transcribed_from"):
        line += f" Transcribed from the {r['transcribed_from']}, not a fresh run of the script."
    if r.get("note"):
        line += f" Note: {r['note']}."
    return line


def generic(r: dict) -> Table:
    """A script without a section of its own: its top-level figures, ratios first."""
    figures = {k: v for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    keys = sorted(figures, key=lambda k: "ratio" not in k and "speedup" not in k)
    return ["figure", "value"], [[k, num(figures[k])] for k in keys]


def render(results: list[tuple[str, dict]]) -> str:
    order = list(SECTIONS)
    results = sorted(results, key=lambda nr: (order.index(nr[1].get("script")) if nr[1].get("script") in order
                                              else len(order), nr[0]))
    out = ["# Benchmarks", "",
           "<!-- Generated by scripts/benchmarks_doc.py from docs/benchmarks/*.json; edit those, not this file. -->",
           "",
           "One current result per benchmark. Ratios come first: both sides ran on the same machine in the same "
           "run, so they carry over to other machines better than the absolute figures beside them. Each result "
           "names its commit, its machine and the command that reproduces it; the script's docstring says what it "
           "measures and how. To refresh one, run the command, copy the JSON it writes over the file in "
           "`docs/benchmarks/`, and run `.venv/bin/python scripts/benchmarks_doc.py`. In the commands, "
           "`<sft-checkpoint>` is the `checkpoints/sft` folder of a default run.", ""]
    current = None
    for name, r in results:
        script = r.get("script", name)
        title, table, extra = SECTIONS.get(script, (script, generic, None))
        if script != current:
            out += [f"## `scripts/{script}`", "", title + ".", ""]
            current = script
        out += [f"`docs/benchmarks/{name}`:", "", *markdown(table(r)), ""]
        if extra:
            out += [*extra(r), ""]
        out += [provenance(r), ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=str(ROOT / "docs" / "benchmarks"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    results = [(p.name, json.loads(p.read_text())) for p in sorted(Path(args.results).glob("*.json"))]
    Path(args.out).write_text(render(results))
    print(f"wrote {args.out} from {len(results)} results")


if __name__ == "__main__":
    main()
