"""Episodes vs plain sampling: sampled tokens/s through the same Ray sampler actors, same model, problems and settings.

    .venv/bin/python scripts/bench_episodes.py --checkpoint <sft checkpoint of a +experiment=math_retry run>
                                               [--prompts 32] [--n 32] [--repeats 3]

Plain sampling (`Samplers.sample`, one completion per sample) and check-and-retry episodes (the same call with
`env=retry`: each attempt ends at end-of-text, the verifier grades it in the engine's process, a wrong one gets the
check's ids appended and comes back as a new request over its cached prefix). Both stop at end-of-text, so they write
different amounts; the figure is the ids the engines sampled per second (observation ids are prefilled, not
sampled, and are not counted). The runs alternate, `--repeats` times each, after one warm-up each; the median
counts. Writes runs/bench/episodes.json.
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
    ap.add_argument("--checkpoint", required=True, help="an SFT checkpoint of a +experiment=math_retry run")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import ray

    from rlpractice import config_schema  # noqa: F401 - registers the schema conf/ names
    from rlpractice.environments.settings import episode_settings
    from rlpractice.hardware import resolve
    from rlpractice.rollout.samplers import Samplers
    from rlpractice.textbook.math_textbook import build_textbook

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=math_retry"])
    resolve(cfg)  # the engines' layout and dtype as a run on this machine picks them, recorded below
    episodes = episode_settings(cfg)
    problems = build_textbook(1, 0, 1, 1, args.prompts).heldout
    samplers = Samplers(args.checkpoint, cfg.sampler, cfg.cluster, cfg.seed)

    def run(retry: bool) -> dict:
        start = time.perf_counter()
        ids = sampled = turns = 0
        for _, chunk in samplers.sample(problems, args.n, logprobs=False, episodes=episodes if retry else None):
            for s in chunk.samples:
                ids += len(s.ids)
                sampled += len(s.ids) - sum(s.observation_mask or [])
                turns += s.turns
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "ids": ids, "sampled": sampled, "turns": turns}

    try:
        plain, retry = alternate(run, args.repeats)
    finally:
        samplers.shutdown()
        ray.shutdown()

    completions = args.prompts * args.n
    result = {
        **meta(),
        "ratio_sampled_tokens_per_s": median_rate(retry, "sampled") / median_rate(plain, "sampled"),
        "plain_tokens_per_s": median_rate(plain, "sampled"),
        "episodes_sampled_tokens_per_s": median_rate(retry, "sampled"),
        "turns_per_episode": statistics.median(r["turns"] for r in retry) / completions,
        "observation_id_share": 1 - statistics.median(r["sampled"] / r["ids"] for r in retry),
        "settings": {"prompts": args.prompts, "samples_per_prompt": args.n, "repeats": args.repeats,
                     "env": cfg.env.name, "max_attempts": cfg.env.max_attempts,
                     "max_new_tokens": cfg.sampler.max_new_tokens, "engines": cfg.sampler.num_samplers,
                     "engine_dtype": cfg.sampler.engine.dtype, "checkpoint": args.checkpoint},
        "runs": {"plain": plain, "episodes": retry},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "episodes.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "machine", "command")}, indent=2))


if __name__ == "__main__":
    main()
