"""Which hardware settings make an RL step fastest on this machine, and how close `auto` comes.

    .venv/bin/python scripts/bench_settings.py [--sft CHECKPOINT] [--steps 6] [--out runs/bench/settings.json]
                                               [hydra overrides ...]

From one SFT checkpoint (given, or made first with the default experiment and rl.steps=0), one short RL run per
candidate setting, all in this one invocation, one after the other on an otherwise idle machine:
  auto            every hardware knob `auto` (rlpractice/hardware.py): what a run picks here
  other CPU kind  what `auto` picks when the probe is told the opposite about native bf16 (this CPU's flags with
                  avx512_bf16/amx_bf16 removed, or avx512_bf16 added): the other machine kind's choice, timed here
  and the grid    engines {bfloat16, float32} x {one engine per core, one engine on all cores}, with the
                  importance correction (algo.sampler_is) on for bf16 engines as auto would set it; plus the
                  auto setting with the learner's linear layers through aten instead of oneDNN, and without the
                  correction (its cost: the engines' log-probs every step).
Each run takes --steps RL steps (the first warms the engines up and is not counted) with no evaluation in between;
the figure is the median step time (sample + grade + learn + sync, as the trainer logs `time/step`). Prints a
table, the fastest candidate, and auto's step over the fastest (the target is <= 1.15x). Writes the JSON result
with the machine (CPU model, cores, native bf16, flags).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from bench_meta import meta  # scripts/ is on sys.path when a script runs
from trainer_runs import ROOT, run_trainer

sys.path.insert(0, str(ROOT))
from rlpractice import config_schema, hardware  # noqa: E402, F401 - importing config_schema registers the schema

OUT = ROOT / "runs" / "bench" / "settings"


def resolved(machine: hardware.Machine) -> dict:
    """The hardware knobs `auto` chooses on `machine`, as config values."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=math"])
    hardware.resolve(cfg, machine)
    s = cfg.sampler
    return {"sampler.num_samplers": s.num_samplers, "sampler.num_cpus_per_sampler": s.num_cpus_per_sampler,
            "sampler.engine.dtype": s.engine.dtype, "learner.cpu_linear": cfg.learner.cpu_linear,
            "algo.sampler_is": cfg.algo.sampler_is}


def other_kind(machine: hardware.Machine) -> hardware.Machine:
    """This machine as the probe would see it with the opposite answer about native bf16."""
    flags = machine.flags - set(hardware.BF16_FLAGS) if machine.native_bf16 else machine.flags | {"avx512_bf16"}
    return hardware.Machine(machine.cpu, machine.cores, frozenset(flags), machine.cuda)


def candidates(machine: hardware.Machine) -> dict[str, dict]:
    auto = resolved(machine)
    cores = machine.cores
    grid = {}
    for dtype in ("bfloat16", "float32"):
        for engines, per in dict.fromkeys([(cores, 1), (1, cores)]):
            grid[f"{dtype}, {engines} x {per} core(s)"] = {
                **auto, "sampler.engine.dtype": dtype, "sampler.num_samplers": engines,
                "sampler.num_cpus_per_sampler": per, "algo.sampler_is": dtype == "bfloat16"}
    return {"auto": auto, "other CPU kind": resolved(other_kind(machine)), **grid,
            "auto, aten linears": {**auto, "learner.cpu_linear": "aten"},
            "auto, no correction": {**auto, "algo.sampler_is": False}}


def median_step(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["stage"] == "rl"][1:]  # the first step warms the engines up
    return {k: statistics.median(r[f"time/{k}"] for r in steps) for k in ("step", "sample", "learn", "sync")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sft", help="an SFT checkpoint directory (default: train one first)")
    parser.add_argument("--steps", type=int, default=6, help="RL steps per candidate (the first is not counted)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "settings.json"))
    args, extra = parser.parse_known_args()
    machine = hardware.probe()
    sft = args.sft
    if sft is None:
        sft = str(run_trainer(OUT / "sft", ["rl.steps=0", *extra], "bench_settings") / "checkpoints" / "sft")
    results = {}
    for name, settings in candidates(machine).items():
        same = next((r for r in results.values() if r["settings"] == settings), None)
        if same is not None:  # the same settings as a candidate already timed (auto is one of the grid)
            results[name] = {**same, "same_as": same.get("same_as") or same["name"]}
            continue
        slug = "".join(c if c.isalnum() else "_" for c in name)
        overrides = [f"model.path={sft}", "sft.steps=0", f"rl.steps={args.steps}", "rl.eval_every=0",
                     "eval.samples_per_problem=1", "eval.k=[1]", "rl.checkpoint_every=0",
                     *(f"{k}={v}" for k, v in settings.items()), *extra]
        run_dir = run_trainer(OUT / slug, overrides, "bench_settings")
        results[name] = {"name": name, "settings": settings, "median_s": median_step(run_dir)}
    fastest = min(results, key=lambda n: results[n]["median_s"]["step"])
    best = results[fastest]["median_s"]["step"]
    for r in results.values():
        r["step_over_fastest"] = r["median_s"]["step"] / best
    out = {**meta(), "hardware": machine.record(), "steps_per_run": args.steps, "sft": sft, "fastest": fastest,
           "auto_over_fastest": results["auto"]["step_over_fastest"],
           "other_kind_over_fastest": results["other CPU kind"]["step_over_fastest"], "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"\n{machine.kind}\n\n| setting | step / fastest | step | sample | learn | settings |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        m, knobs = r["median_s"], ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in r["settings"].items())
        print(f"| {name} | {r['step_over_fastest']:.2f}x | {m['step']:.2f} s | {m['sample']:.2f} s | "
              f"{m['learn']:.2f} s | {knobs} |")
    print(f"\nfastest: {fastest}; auto {out['auto_over_fastest']:.2f}x of it; the other CPU kind's auto "
          f"{out['other_kind_over_fastest']:.2f}x\nwritten: {args.out}")


if __name__ == "__main__":
    main()
