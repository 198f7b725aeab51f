"""A group of sampler actors: starts Ray, spreads requests over engines, streams results back.

Large groups are split into requests of at most `max_samples_per_request` completions, so 1,024+
samples for one prompt never sit in one engine call; results stream back call by call, so grading
can start before generation ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import ray
from omegaconf import DictConfig, OmegaConf

from rlpractice.rollout.sampler import SamplerActor


def start_ray(cluster: DictConfig) -> None:
    if ray.is_initialized():
        return
    env = {"VLLM_LOGGING_LEVEL": cluster.vllm_log_level, "TOKENIZERS_PARALLELISM": "false"}
    kwargs = dict(include_dashboard=False, log_to_driver=cluster.log_to_driver,
                  runtime_env={"env_vars": env}, configure_logging=False)
    if cluster.address:
        ray.init(address=cluster.address, **kwargs)
    else:
        ray.init(num_cpus=cluster.num_cpus, object_store_memory=cluster.object_store_mb * 2**20, **kwargs)


class Samplers:
    def __init__(self, model_dir: str, sampler: DictConfig, cluster: DictConfig, seed: int):
        start_ray(cluster)
        engine_kwargs = OmegaConf.to_container(sampler.engine, resolve=True)
        self.sampler = sampler
        self.actors = [
            SamplerActor.options(num_cpus=sampler.num_cpus_per_sampler).remote(model_dir, engine_kwargs, seed + i)
            for i in range(sampler.num_samplers)
        ]
        self.info = ray.get([a.ready.remote() for a in self.actors])

    def sample(self, prompts: list[str], n: int, temperature: float | None = None) -> Iterator[tuple[int, dict]]:
        """Yield (prompt_index, {"prompt_ids", "completions"}) chunks as they finish; n per prompt in total."""
        s = self.sampler
        per_request = max(1, s.max_samples_per_request)
        requests = [(i, min(per_request, n - done)) for i in range(len(prompts)) for done in range(0, n, per_request)]
        calls: list[list[tuple[int, int]]] = [[]]
        for req in requests:  # pack requests into calls of about samples_per_call completions
            if calls[-1] and sum(k for _, k in calls[-1]) + req[1] > s.samples_per_call:
                calls.append([])
            calls[-1].append(req)
        temperature = s.temperature if temperature is None else temperature
        futures = {}
        for c, call in enumerate(calls):
            actor = self.actors[c % len(self.actors)]
            ref = actor.generate.remote([(prompts[i], k) for i, k in call], s.max_new_tokens, temperature, s.top_p)
            futures[ref] = call
        pending = list(futures)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                for (i, _), result in zip(futures.pop(ref), ray.get(ref), strict=True):
                    yield i, result

    def sync_weights(self, weights_dir: str) -> float:
        """Every engine serves the weights in `weights_dir` when this returns; seconds taken (max)."""
        return max(ray.get([a.load_weights.remote(os.fspath(weights_dir)) for a in self.actors]))

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []
