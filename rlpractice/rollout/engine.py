"""One Ray actor = one vLLM engine that samples completions for (prompt, n) requests."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import ray

from rlpractice.rollout.batch import Group, Sample

if TYPE_CHECKING:  # the actor imports this module before its engine sets the thread settings
    from rlpractice.environments.settings import EpisodeSettings
    from rlpractice.textbook.problems import Problem


@dataclass(frozen=True)
class EngineInfo:
    """What a started engine reports about itself (`SamplerActor.ready`)."""

    startup_s: float
    pid: int
    node: str  # Ray's node id
    machine: str  # the node's IP address: Ray's virtual nodes on one machine share it (and its cores)
    cores: list[int] | None  # the cores it computes on; None: vLLM's own binding (a GPU engine, too few cores)
    engine_in_process: bool  # vLLM's engine core in the actor's own process (VLLM_ENABLE_V1_MULTIPROCESSING=0)
    omp_threads: str


def write_files(files: dict[str, bytes], folder: str | None = None) -> str:
    """Checkpoint files shipped through Ray's object store, written to a folder on this node."""
    folder = folder or tempfile.mkdtemp(prefix="rlpractice_weights_")
    for name, data in files.items():
        (Path(folder) / name).write_bytes(data)
    return folder


def engine_cores(available: list[int], slot: int, cpus: float) -> list[int] | None:
    """The cores a CPU engine computes on: the `slot`-th run of `cpus` cores among those `available` on its
    machine, so engines sharing a machine never share a core. None (vLLM's own binding) when `cpus` is not
    a whole number or the machine has too few cores for this slot."""
    if cpus < 1 or cpus != int(cpus) or (slot + 1) * int(cpus) > len(available):
        return None
    return sorted(available)[slot * int(cpus) : (slot + 1) * int(cpus)]


def set_engine_threads(cores: list[int] | None) -> None:
    """Environment for a CPU engine computing on `cores` (None: vLLM's own binding over this process's cores).
    vLLM-CPU pins its compute threads to VLLM_CPU_OMP_THREADS_BIND; left to itself it picks the same cores for
    every engine on a machine. Ray sets OMP_NUM_THREADS to an actor's num_cpus, which under vLLM's own
    binding (all cores) oversubscribes them. Call before torch is imported in this process; the
    engine's own processes, if any, inherit it."""
    if "torch" in sys.modules:  # torch reads the thread settings once, at import
        warnings.warn("torch was imported before the engine's thread settings; they may not apply", stacklevel=2)
    if cores:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))
    os.environ["OMP_NUM_THREADS"] = str(len(cores or os.sched_getaffinity(0)))


def write_output_to(log_path: str | None) -> None:
    """Send this process's stdout and stderr (vLLM's start-up messages and library warnings, which Ray would
    otherwise copy onto the trainer's console) into `log_path`, at the file-descriptor level so output of
    C++ code and of child processes goes there too."""
    if not log_path:
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(fd, stream.fileno())
    os.close(fd)


def sampling_params(n: int, max_tokens: int, temperature: float, top_p: float, ignore_eos: bool, logprobs: bool):
    """vLLM's settings for one request of `n` completions, as the actors send it (bench_sampling's raw engines
    too). With `logprobs`, the sampled token's log-prob at each position (flat: one list, not a dict per
    token). No detokenization: vLLM's incremental detokenizer decodes token by token (and every log-prob's token
    too), which costs more than one batch decode of each call's completions, as the callers do.
    No per-request seed: on vLLM-CPU 0.32 a seeded request crashes the engine once batches are chunked
    ("CPU Generator does not use offset"); randomness comes from the engine's seed."""
    from vllm import SamplingParams  # imported here: only engine processes need vLLM

    return SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                          logprobs=0 if logprobs else None, flat_logprobs=True, detokenize=False,
                          ignore_eos=ignore_eos)


@ray.remote
class SamplerActor:
    def __init__(self, weights: str | dict[str, bytes], engine_kwargs: dict, seed: int,
                 update: dict[str, bytes] | None = None, core_slot: int | None = None, cpus: float = 1,
                 log_path: str | None = None):
        """`weights`: a checkpoint directory this node can read (shared filesystem), or the checkpoint's
        files themselves (weight_sync=object_store), written to a node-local folder first, with the
        latest synced weights (`update`) written over them. `core_slot` (CPU engines): this engine's index
        among the engines on its machine; it computes on `cpus` cores of its own (`engine_cores`).
        `log_path`: where the engine's own output goes (on the node it runs on)."""
        write_output_to(log_path)
        self.cores = None if core_slot is None else engine_cores(sorted(os.sched_getaffinity(0)), core_slot, cpus)
        set_engine_threads(self.cores)  # before vLLM imports torch
        from vllm import LLM  # imported here: only the actor process needs vLLM

        start = time.time()
        self.local_dir = None
        if isinstance(weights, dict):
            self.local_dir = weights = write_files(weights)
            if update:
                write_files(update, weights)
            engine_kwargs = {**engine_kwargs, "tokenizer": weights}
        self.llm = LLM(model=weights, seed=seed, **engine_kwargs)
        if "weight_transfer_config" in engine_kwargs:  # weight_sync=cuda_ipc (rollout/weight_transfer.py)
            self.llm.init_weight_transfer_engine({"init_info": {"packed": False}})
        self.startup_s = time.time() - start

    def ready(self) -> EngineInfo:
        return EngineInfo(self.startup_s, os.getpid(), ray.get_runtime_context().get_node_id(),
                          ray.util.get_node_ip_address(), self.cores,
                          os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0", os.environ["OMP_NUM_THREADS"])

    def generate(self, requests: list[tuple[str, int]], max_tokens: int, temperature: float,
                 top_p: float, ignore_eos: bool = False, logprobs: bool = True) -> list[Group]:
        """For each (prompt, n): the prompt's token ids and n samples (token ids, text, finish reason, and, with
        `logprobs`, the sampler's log-prob of each sampled token, else None: they cost sampling time, see
        scripts/bench_sampling.py --logprobs). The text comes from one batch decode of the call's completions
        (`sampling_params`), the same text as vLLM's own (skip_special_tokens).
        """
        params = [sampling_params(n, max_tokens, temperature, top_p, ignore_eos, logprobs) for _, n in requests]
        outputs = self.llm.generate([p for p, _ in requests], params, use_tqdm=False)
        texts = iter(self.llm.get_tokenizer().batch_decode([c.token_ids for out in outputs for c in out.outputs],
                                                           skip_special_tokens=True))
        # flat log-probs with logprobs=0: one entry per position, the sampled token's
        return [Group(None, list(out.prompt_token_ids),
                      [Sample(list(c.token_ids), next(texts), c.finish_reason,
                              list(c.logprobs.logprobs) if logprobs else None) for c in out.outputs])
                for out in outputs]

    def generate_episodes(self, requests: list[tuple[Problem, int]], max_tokens: int, temperature: float,
                          top_p: float, logprobs: bool, episodes: EpisodeSettings,
                          ignore_eos: bool = False) -> list[Group]:
        """`generate` as episodes with the run's tools or environment (rlpractice/environments/loop.py): each sample's
        ids are the engine's ids plus the observations' ids, with its `observation_mask`, its turns and, when the
        environment gives the reward, its grade. What the episodes share (tools, grading workers, your
        environment's worker processes) is made once per engine and settings."""
        from rlpractice.environments.loop import run_episodes, start_episodes
        from rlpractice.environments.settings import EnvironmentMaker

        if getattr(self, "episodes", None) != episodes:
            if getattr(self, "make_env", None) is not None:
                self.make_env.close()
            self.make_env, self.episodes = EnvironmentMaker(episodes), episodes
        tokenizer = self.llm.get_tokenizer()
        prompt_ids, started = start_episodes([p for p, _ in requests], [n for _, n in requests], self.make_env,
                                             tokenizer)
        params = sampling_params(1, max_tokens, temperature, top_p, ignore_eos, logprobs)
        done = run_episodes(self.llm.llm_engine, tokenizer, prompt_ids, started, params, episodes.max_turns,
                            episodes.step_timeout_s)
        texts = iter(tokenizer.batch_decode([e.ids for e in done], skip_special_tokens=True))
        groups = [Group(None, ids) for ids in prompt_ids]
        gives_reward = episodes.env is not None  # tools leave the reward to the verifier
        for e in done:
            info = e.info
            groups[e.prompt].samples.append(Sample(
                e.ids, next(texts), e.finish, e.logps if logprobs else None, e.observation_mask,
                tool_calls=info.get("tool_calls", 0), tool_errors=info.get("tool_errors", 0),
                tool_timeouts=info.get("tool_timeouts", 0), tool_s=info.get("tool_s", 0.0), turns=e.turns + 1,
                turn_rewards=list(e.turn_rewards) if gives_reward else None, grade=e.grade(episodes.discount)))
        return groups

    def close(self) -> None:
        """Remove this node's copy of the shipped weights (object store sync)."""
        if self.local_dir:
            import shutil

            shutil.rmtree(self.local_dir, ignore_errors=True)

    def load_weights(self, weights: str | dict[str, bytes]) -> float:
        """Swap in new weights, without restarting the engine: from an HF safetensors directory, or from
        the files themselves (object store), written over this node's local copy first."""
        start = time.time()
        if isinstance(weights, dict):
            weights = write_files(weights, self.local_dir)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": weights})
        self._forget_cached_prompts()
        return time.time() - start

    def _forget_cached_prompts(self) -> None:
        """Drop the prefix cache after new weights: its KV blocks were computed by the old ones, and a prompt seen
        before (a problem drawn again, every evaluation's held-out prompts) would otherwise continue from them.
        """
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM did not reset its prefix cache after a weight update")

    def sleep(self) -> None:
        """Free the engine's GPU memory for the learner (sampler.engine.enable_sleep_mode): level 1 drops the KV
        cache and moves the weights to CPU memory; `wake_up` brings them back before the next sync."""
        self.llm.sleep(level=1)

    def wake_up(self) -> None:
        self.llm.wake_up()

    def receive_weights(self, update_info: dict) -> float:
        """Swap in new weights read from the learner's GPU memory (weight_sync=cuda_ipc): `update_info` from
        `weight_transfer.ipc_payload`, loaded by vLLM's IPC weight-transfer engine."""
        start = time.time()
        self.llm.start_weight_update()
        self.llm.update_weights({"update_info": update_info})
        self.llm.finish_weight_update()
        self._forget_cached_prompts()
        return time.time() - start
