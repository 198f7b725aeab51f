"""Tool rollouts vs plain sampling: tokens/s through the same Ray sampler actors, same model, prompts and settings.

    .venv/bin/python scripts/bench_tools.py --checkpoint <sft-checkpoint of a +experiment=math_tools run>
                                            [--prompts 32] [--n 32] [--tokens 96] [--repeats 3]

Both ways every completion is `--tokens` ids long (end-of-text ignored), so both produce the same number of ids:
plain sampling (`Samplers.sample`, what RL runs without tools) and tool rollouts (the same call with the
run's `tools`: generation stops at each call's end token, the calculator runs in the engine's process, its
result ids are appended and the sample continues as a new request over its cached prefix). The tool rollouts' ids are
partly the tools' (prefilled, not sampled); the headline ratio counts only the ids the engines sampled, the
other figure every completion id. The runs alternate, `--repeats` times each, after one warm-up each; the
median counts. Writes runs/bench/tools.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench_meta import alternate, median_rate, meta  # scripts/ is on sys.path when a script runs
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="an SFT checkpoint trained with tool calls")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import ray

    from rlpractice import config_schema  # noqa: F401 - registers the schema conf/ names
    from rlpractice.environments.settings import EpisodeSettings
    from rlpractice.environments.tool_env import tool_settings
    from rlpractice.rollout.samplers import Samplers
    from rlpractice.textbook.math_textbook import build_textbook

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=math_tools", f"sampler.max_new_tokens={args.tokens}"])
    tools = tool_settings(cfg)
    problems = build_textbook(1, 0, 1, 1, args.prompts).heldout
    samplers = Samplers(args.checkpoint, cfg.sampler, cfg.cluster, cfg.seed)

    def run(with_tools: bool) -> dict:
        start = time.perf_counter()
        ids = sampled = calls = 0
        for _, chunk in samplers.sample(problems, args.n, ignore_eos=True, logprobs=False,
                                        episodes=EpisodeSettings(tools=tools) if with_tools else None):
            for s in chunk.samples:
                ids += len(s.ids)
                sampled += len(s.ids) - sum(s.observation_mask or [])
                calls += s.tool_calls
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "ids": ids, "sampled": sampled, "calls": calls}

    try:
        plain, tool = alternate(run, args.repeats)
    finally:
        samplers.shutdown()
        ray.shutdown()

    completions = args.prompts * args.n
    result = {
        **meta(),
        "ratio_sampled_tokens_per_s": median_rate(tool, "sampled") / median_rate(plain, "sampled"),
        "ratio_completion_ids_per_s": median_rate(tool, "ids") / median_rate(plain, "ids"),
        "plain_tokens_per_s": median_rate(plain, "sampled"),
        "tools_sampled_tokens_per_s": median_rate(tool, "sampled"),
        "tools_completion_ids_per_s": median_rate(tool, "ids"),
        "tool_calls_per_completion": statistics.median(r["calls"] for r in tool) / completions,
        "tool_id_share": 1 - statistics.median(r["sampled"] / r["ids"] for r in tool),
        "settings": {"prompts": args.prompts, "samples_per_prompt": args.n, "tokens": args.tokens,
                     "repeats": args.repeats, "tools": tools.names, "max_calls": tools.max_calls,
                     "engines": cfg.sampler.num_samplers, "checkpoint": args.checkpoint},
        "runs": {"plain": plain, "tools": tool},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "tools.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "machine", "command")}, indent=2))


if __name__ == "__main__":
    main()
