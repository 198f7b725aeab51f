"""A group of sampler actors: starts Ray, spreads requests over engines, streams results back.

Large groups are split into requests of at most `max_samples_per_request` completions, so 1,024+
samples for one prompt never sit in one engine call; results stream back call by call, so grading
can start before generation ends.
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import ray
from omegaconf import DictConfig, OmegaConf
from ray.util.placement_group import placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rlpractice import hardware
from rlpractice.cluster import place_group, start_ray
from rlpractice.environments.settings import EpisodeSettings
from rlpractice.errors import UserError
from rlpractice.grading.pool import GradingPool
from rlpractice.rollout.batch import Group
from rlpractice.rollout.engine import EngineInfo, SamplerActor
from rlpractice.rollout.weight_sync import MODES
from rlpractice.textbook.problems import Problem


def sample_groups(samplers: Samplers, pool: GradingPool, problems: list[Problem], n: int, logprobs: bool = True,
                  episodes: EpisodeSettings | None = None) -> tuple[list[Group], float]:
    """n graded samples per problem, and the seconds spent grading. Chunks are graded as they stream in, so
    grading overlaps generation; with `logprobs` each sample keeps the engine's log-probs; with `episodes` the
    samples are episodes with the run's tools or environment (an environment that gives the reward has graded
    them already)."""
    groups = [Group(p, []) for p in problems]
    grade_s = 0.0
    for i, chunk in samplers.sample(problems, n, logprobs=logprobs, episodes=episodes):
        t = time.time()
        todo = [s for s in chunk.samples if s.grade is None]
        grades = pool.grade([s.text for s in todo], [problems[i].answer] * len(todo),
                            [problems[i].columns] * len(todo), prompts=[problems[i].prompt] * len(todo))
        grade_s += time.time() - t
        for sample, grade in zip(todo, grades, strict=True):
            sample.grade = grade
        groups[i].prompt_ids = chunk.prompt_ids
        groups[i].samples += chunk.samples
    return groups, grade_s


def plan_calls(num_prompts: int, n: int, per_request: int, per_call: int, engines: int) -> list[list[tuple[int, int]]]:
    """Requests (prompt index, samples) of at most `per_request` samples, packed into engine calls of about
    `per_call` samples, and into at least one call per engine when there is that much work (the calls go to
    the engines in turn, so every engine gets a share)."""
    per_request = max(1, per_request)
    requests = [(i, min(per_request, n - done)) for i in range(num_prompts) for done in range(0, n, per_request)]
    per_call = min(per_call, -(-num_prompts * n // engines))
    calls: list[list[tuple[int, int]]] = [[]]
    for req in requests:
        if calls[-1] and sum(k for _, k in calls[-1]) + req[1] > per_call:
            calls.append([])
        calls[-1].append(req)
    return calls


MAX_RESTARTS_PER_CALL = 3  # a call whose engine keeps dying is an error, not something to retry forever


def engine_env(sampler: DictConfig) -> dict[str, str]:
    """Environment variables an engine's process needs for the `sampler` group (vLLM reads these knobs
    from the environment, not from its arguments). The cores a CPU engine computes on are set by the
    actor itself (`engine_cores`): they depend on where Ray placed it."""
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0" if sampler.engine_in_process else "1",
           **{k: str(v) for k, v in sampler.get("engine_env", {}).items()}}
    return {**env, **MODES[sampler.weight_sync].engine_env}


def cores_left(available: list[int], engines: list[EngineInfo], machine: str) -> list[int]:
    """The cores of `machine` that no engine there computes on (`engines`: the actors' `ready()` reports).
    None of them when an engine there was left to vLLM's own binding: its cores are unknown."""
    here = [info for info in engines if info.machine == machine]
    if any(info.cores is None for info in here):
        return []
    used = {c for info in here for c in info.cores}
    return [c for c in sorted(available) if c not in used]


def machine_slots(machines: list[str]) -> list[int]:
    """For each engine, given the machine (IP address) each one was placed on: its index among the engines
    on that machine. Ray's virtual nodes on one machine share its cores, so they count as one machine."""
    seen: Counter[str] = Counter()
    slots = []
    for m in machines:
        slots.append(seen[m])
        seen[m] += 1
    return slots


def engine_failure(error: Exception, log_dir: str | Path | None) -> str:
    """One line of why an engine failed to start: the innermost error vLLM raised (a Ray actor error wraps it
    in pages of traceback), with the whole text kept in log_dir/engine_start_error.log."""
    text = str(error)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # the most specific line: vLLM's own "Value error, ..." (pydantic) or the last "SomethingError: ..." line
    reason = next((ln for ln in lines if "Value error," in ln), None) or next(
        (ln for ln in reversed(lines) if ln.split(":")[0].endswith(("Error", "Exception"))), lines[-1] if lines else "")
    reason = reason.split("Value error,", 1)[-1].split(" [type=")[0].strip()
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        path = Path(log_dir) / "engine_start_error.log"
        path.write_text(text)
        return f"{reason} (full error: {path})"
    return reason


class Samplers:
    def __init__(self, model_dir: str, sampler: DictConfig, cluster: DictConfig, seed: int,
                 log_dir: str | Path | None = None):
        """`log_dir`: where each engine writes its own output (sampler_<i>.log); None leaves it to Ray, which
        copies it onto this process's console."""
        start_ray(cluster)
        if any(str(v) == "auto" for v in (sampler.num_samplers, sampler.num_cpus_per_sampler, sampler.engine.dtype)):
            sampler = copy.deepcopy(sampler)  # a config a run did not resolve first (hardware.resolve)
            hardware.resolve_sampler(sampler, hardware.probe(), int(ray.available_resources().get("CPU", 1)))
        self.sampler, self.seed, self.log_dir = sampler, seed, log_dir
        self.weights = MODES[sampler.weight_sync](model_dir)  # how new weights reach the engines
        # the tokenizer stays with the first checkpoint; weight syncs only write model files
        self.engine_kwargs = {**OmegaConf.to_container(sampler.engine, resolve=True), "tokenizer": model_dir,
                              **self.weights.engine_kwargs}
        self.restarts = 0
        self.asleep = False  # engines sleeping while the learner trains (sampler.engine.enable_sleep_mode)
        # One bundle per engine; SPREAD puts them on different nodes when the cluster has several, so
        # sampling scales with nodes. A restarted engine goes back into its own bundle.
        bundle = {"CPU": sampler.num_cpus_per_sampler}
        if sampler.num_gpus_per_sampler:
            bundle["GPU"] = sampler.num_gpus_per_sampler
        self.group = place_group("samplers", bundle, sampler.num_samplers, sampler.placement, cluster,
                                 "Lower sampler.num_samplers or the resources per sampler")
        self.core_slots = self._core_slots()
        self.actors = [self._start(i) for i in range(sampler.num_samplers)]
        try:
            self.info = ray.get([a.ready.remote() for a in self.actors])
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
            self.shutdown()
            raise UserError(f"a vLLM engine could not start: {engine_failure(e, self.log_dir)}") from None
        if not sampler.num_gpus_per_sampler and any(info.cores is None for info in self.info):
            print(f"[sampler] a machine has fewer cores than its engines ask for ({sampler.num_cpus_per_sampler} "
                  "each): vLLM binds those engines itself, and engines on one machine may then share cores",
                  flush=True)

    def cores_left_here(self) -> list[int]:
        """The cores of this (the trainer's) machine that no engine computes on."""
        return cores_left(sorted(os.sched_getaffinity(0)), self.info, ray.util.get_node_ip_address())

    def _core_slots(self) -> list[int | None]:
        """Each CPU engine's index among the engines on its machine (None for GPU engines)."""
        if self.sampler.num_gpus_per_sampler:
            return [None] * self.sampler.num_samplers
        bundle_node = placement_group_table(self.group)["bundles_to_node_id"]
        address = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        return machine_slots([address[bundle_node[i]] for i in range(self.sampler.num_samplers)])

    def _start(self, i: int):
        strategy = PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=i)
        weights, update = self.weights.start_args()
        # Ray merges these env_vars with the job's (start_ray's cache variables)
        return SamplerActor.options(num_cpus=self.sampler.num_cpus_per_sampler,
                                    num_gpus=self.sampler.num_gpus_per_sampler, scheduling_strategy=strategy,
                                    runtime_env={"env_vars": engine_env(self.sampler)}).remote(
            weights, self.engine_kwargs, self.seed + i, update, self.core_slots[i], self.sampler.num_cpus_per_sampler,
            os.path.join(self.log_dir, f"sampler_{i}.log") if self.log_dir else None)

    def _replace_if_dead(self, slot: int, actor, error: Exception) -> None:
        """Sampler `slot` failed with `error`: start a new engine there with the current weights
        (unless another failed call already did)."""
        if self.actors[slot] is actor:
            ray.kill(actor)
            self.actors[slot] = self._start(slot)
            ray.get(self.actors[slot].ready.remote())
            self.weights.catch_up(self.actors[slot])
            self.restarts += 1
            print(f"[sampler] engine {slot} died ({type(error).__name__}); restarted it with the current "
                  f"weights and retried its requests (restart {self.restarts})", flush=True)

    def sample(self, prompts: list[str] | list[Problem], n: int, temperature: float | None = None,
               ignore_eos: bool = False, logprobs: bool = True,
               episodes: EpisodeSettings | None = None) -> Iterator[tuple[int, Group]]:
        """Yield (prompt_index, a group of its samples) as they finish; n per prompt in total. `prompts`: texts, or
        problems (their prompts; `episodes` needs problems). `ignore_eos` makes every completion max_new_tokens
        long (for benchmarks); `logprobs` returns the engine's log-prob of each sampled token (see
        `SamplerActor.generate`); `episodes` (the run's tools or environment) samples episodes
        (`SamplerActor.generate_episodes`)."""
        s = self.sampler
        self._wake()
        calls = plan_calls(len(prompts), n, s.max_samples_per_request, s.samples_per_call, len(self.actors))
        temperature = s.temperature if temperature is None else temperature
        texts = [p.prompt if isinstance(p, Problem) else p for p in prompts]
        if episodes and not all(isinstance(p, Problem) for p in prompts):
            raise TypeError("episodes start from problems (their answers and columns), not from prompt texts")

        def submit(call: list[tuple[int, int]], slot: int, tries: int) -> None:
            actor = self.actors[slot]
            ref = (actor.generate_episodes.remote([(prompts[i], k) for i, k in call], s.max_new_tokens, temperature,
                                                  s.top_p, logprobs, episodes, ignore_eos) if episodes else
                   actor.generate.remote([(texts[i], k) for i, k in call], s.max_new_tokens, temperature, s.top_p,
                                         ignore_eos, logprobs))
            futures[ref] = (call, slot, actor, tries)

        futures: dict = {}
        for c, call in enumerate(calls):
            submit(call, c % len(self.actors), 0)
        while futures:
            [ref], _ = ray.wait(list(futures), num_returns=1)
            call, slot, actor, tries = futures.pop(ref)
            try:
                results = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
                if isinstance(e, ray.exceptions.RayTaskError) and "EngineDead" not in str(e):
                    raise  # a bug in the call, not a dead engine: retrying would not help
                if tries >= MAX_RESTARTS_PER_CALL:
                    raise RuntimeError(f"sampler engine {slot} died {tries + 1} times on the same requests") from e
                self._replace_if_dead(slot, actor, e)
                submit(call, slot, tries + 1)
                continue
            for (i, _), result in zip(call, results, strict=True):
                yield i, result

    def sync_from(self, model, sync_dir: Path) -> float:
        """Every engine serves `model`'s current weights when this returns; seconds taken (max over engines).
        `sync_dir`: where a checkpoint is written when the weight-sync mode needs one."""
        self._wake()
        return self.weights.push(self.actors, model, sync_dir)

    def sync_weights(self, weights_dir: str | Path) -> float:
        """Every engine serves the HF checkpoint in `weights_dir` when this returns; seconds taken (max)."""
        self._wake()
        return self.weights.push_dir(self.actors, weights_dir)

    def sleep(self) -> None:
        """With sampler.engine.enable_sleep_mode (GPU engines beside the learner): free the engines' GPU memory
        until the next sync or sample, which wake them. Otherwise nothing."""
        if self.sampler.engine.get("enable_sleep_mode") and not self.asleep:
            ray.get([a.sleep.remote() for a in self.actors])
            self.asleep = True

    def _wake(self) -> None:
        if self.asleep:
            ray.get([a.wake_up.remote() for a in self.actors])
            self.asleep = False

    def shutdown(self) -> None:
        try:  # node-local weight copies (object store sync); a dead engine has none left to remove
            ray.get([a.close.remote() for a in self.actors], timeout=30)
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass
        for a in self.actors:
            ray.kill(a)
        self.actors = []
        remove_placement_group(self.group)
