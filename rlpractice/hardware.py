"""What this machine has, and the settings whose best value depends on it.

Knobs set to `auto` in conf/ are resolved here, once, at the start of a run: the engines' dtype, how many engines
and cores each, the local Ray instance's CPUs, the learner's threads, its CPU linear-layer path, the precision
of pretraining and SFT, and whether RL corrects for the engines' precision. An explicit value always wins.
`resolve` says what it chose and why in one line, and writes the choices into the config, so the run's recorded
configuration (W&B, `resolved_config.yaml`) holds real values.

The rules are pure functions of a `Machine`, so tests can force any machine (with or without native bf16, 1, 2 or
4 cores) whatever CPU they run on. Imports neither torch nor vLLM: benchmark scripts probe before either loads.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, open_dict

# CPU flags that give bf16 arithmetic in hardware: AVX-512 BF16 and AMX on x86, the BF16 extension on Arm. Without
# them bf16 is emulated and slower than fp32 (vLLM's engines by ~5x on a Zen 3 EPYC).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
RECORDED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "bf16", "sve")
MAX_CPU_ENGINES = 4  # beyond this, wider engines: each one holds its own KV cache and copy of the weights


@dataclass(frozen=True)
class Machine:
    cpu: str  # model name
    cores: int  # cores this process may run on
    flags: frozenset[str]  # CPU feature flags (/proc/cpuinfo)
    cuda: bool = False  # a CUDA GPU is visible

    @property
    def native_bf16(self) -> bool:
        return bool(self.flags & set(BF16_FLAGS))

    @property
    def kind(self) -> str:
        """One phrase for logs and benchmark records, e.g. 'AMD EPYC, 2 cores, native bf16 (avx512_bf16)'."""
        bf16 = f"native bf16 ({', '.join(sorted(self.flags & set(BF16_FLAGS)))})" if self.native_bf16 \
            else "no native bf16"
        return f"{self.cpu}, {self.cores} cores, {bf16}"

    def record(self) -> dict:
        """What benchmark results store about the CPU."""
        return {"cpu": self.cpu, "cores": self.cores, "native_bf16": self.native_bf16,
                "flags": sorted(self.flags & set(RECORDED_FLAGS))}


def probe(cuda: bool | None = None) -> Machine:
    """This machine. `cuda`: whether a GPU is visible, when the caller knows (None: ask torch if it is loaded,
    else nvidia-smi's device files)."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model name") and cpu in ("", platform.machine(), platform.processor()):
                cpu = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cuda is None:
        import sys

        torch = sys.modules.get("torch")
        cuda = bool(torch.cuda.is_available()) if torch is not None else Path("/dev/nvidia0").exists()
    return Machine(cpu=cpu, cores=cores, flags=frozenset(flags), cuda=cuda)


# --- the rules: pure functions of a Machine -----------------------------------------------------------------------

def engine_dtype(machine: Machine, gpu_engines: bool) -> tuple[str, str]:
    """(dtype, why) for the vLLM engines: bfloat16 on GPUs and on CPUs that compute it natively, else float32."""
    if gpu_engines:
        return "bfloat16", "GPU engines"
    if machine.native_bf16:
        return "bfloat16", "this CPU computes bf16 natively"
    return "float32", "this CPU has no native bf16"


def engine_layout(cores: int) -> tuple[int, int]:
    """(engines, cores per engine) for CPU engines on `cores` cores: one engine per core up to MAX_CPU_ENGINES,
    then wider engines. A small model is bound by each engine step's fixed cost, not by its matmuls, so engines
    side by side sample faster than one engine on all cores (scripts/bench_settings.py measures it)."""
    engines = max(1, min(cores, MAX_CPU_ENGINES))
    return engines, max(1, cores // engines)


def precision(dtype: str) -> str:
    """A vLLM dtype name as the precision it computes in."""
    return {"float": "float32", "half": "float16"}.get(str(dtype), str(dtype))


def lm_bf16(machine: Machine, learner_on_cuda: bool) -> bool:
    """learner.lm_bf16: pretraining and SFT in bf16 autocast where the learner's device computes bf16 natively
    (a GPU, or a CPU with avx512_bf16 / AMX; fp32 weights and optimizer either way). Emulated bf16 is slower than
    fp32, and RL keeps its own setting (learner.bf16)."""
    return learner_on_cuda or machine.native_bf16


def cpu_linear(onednn_available: bool) -> str:
    """The fp32 CPU learner's linear layers: oneDNN where torch has it (same arithmetic, faster than the BLAS a
    matmul calls on the default model's small shapes), else aten's."""
    return "onednn" if onednn_available else "aten"


# --- applying them to a config --------------------------------------------------------------------------------------

def _auto(node: DictConfig, key: str) -> bool:
    return str(node.get(key)) == "auto"


def resolve_sampler(sampler: DictConfig, machine: Machine, cores: int | None = None) -> list[str]:
    """Fill the `auto` keys of a sampler config in place; returns a reason per choice (none: nothing was `auto`).
    `cores`: the CPUs the engines may have (default: the machine's)."""
    why = []
    gpu_engines = bool(sampler.num_gpus_per_sampler)
    with open_dict(sampler):
        if _auto(sampler, "num_samplers") or _auto(sampler, "num_cpus_per_sampler"):
            cores = cores or machine.cores
            engines, per = (1, 1) if gpu_engines else engine_layout(cores)
            if not _auto(sampler, "num_samplers"):  # the engines asked for share the cores
                per = 1 if gpu_engines else max(1, cores // sampler.num_samplers)
            elif not _auto(sampler, "num_cpus_per_sampler"):  # as many engines of that width as fit
                engines = 1 if gpu_engines else max(1, min(int(cores // sampler.num_cpus_per_sampler),
                                                           MAX_CPU_ENGINES))
            if _auto(sampler, "num_samplers"):
                sampler.num_samplers = engines
            if _auto(sampler, "num_cpus_per_sampler"):
                sampler.num_cpus_per_sampler = per
            why.append("one engine per GPU" if gpu_engines else "small-model engines side by side")
        if _auto(sampler.engine, "dtype"):
            sampler.engine.dtype, reason = engine_dtype(machine, gpu_engines)
            why.append(reason)
    return why


def resolve(cfg: DictConfig, machine: Machine | None = None, onednn: bool | None = None) -> str | None:
    """Fill every `auto` hardware knob of `cfg` in place. Returns the line a run prints, e.g. `[hardware] AMD EPYC,
    2 cores, no native bf16: Ray 2 CPUs, engines 2 x 1 core, float32 (...), ...`, or None when nothing was `auto`."""
    machine = machine or probe()
    chosen = []
    with open_dict(cfg):
        if _auto(cfg.cluster, "num_cpus"):
            cfg.cluster.num_cpus = machine.cores
            chosen.append(f"Ray {machine.cores} CPUs")
        ranks = cfg.learner.num_workers if cfg.learner.num_workers > 1 else 0
        cores = cfg.cluster.num_cpus or machine.cores
        engine_cores = max(1, int(cores - ranks * cfg.learner.num_cpus_per_worker))
        why = resolve_sampler(cfg.sampler, machine, engine_cores)
        if why:  # a reason for each sampler knob that was `auto`
            s = cfg.sampler
            unit = f"{s.num_gpus_per_sampler:g} GPU" if s.num_gpus_per_sampler else \
                f"{s.num_cpus_per_sampler:g} core{'s' if s.num_cpus_per_sampler != 1 else ''}"
            chosen.append(f"engines {s.num_samplers} x {unit}, {s.engine.dtype} ({'; '.join(why)})")
        if _auto(cfg.learner, "threads"):
            # every core it may run on: torch's own default counts the machine's physical cores, more than a
            # container or `taskset` grants
            cfg.learner.threads = machine.cores
            chosen.append(f"learner {cfg.learner.threads} thread{'s' if cfg.learner.threads != 1 else ''}")
        if _auto(cfg.learner, "cpu_linear"):
            if onednn is None:
                from rlpractice.learner.onednn import onednn_available

                onednn = onednn_available()
            cfg.learner.cpu_linear = cpu_linear(onednn)
            chosen.append(f"{cfg.learner.cpu_linear} linear layers")
        if _auto(cfg.learner, "lm_bf16"):
            from rlpractice.learner.device import learner_on_cuda

            cfg.learner.lm_bf16 = lm_bf16(machine, learner_on_cuda(cfg.learner))
            chosen.append(f"pretrain/SFT in {'bf16 autocast' if cfg.learner.lm_bf16 else 'fp32'}")
        if _auto(cfg.algo, "sampler_is") and cfg.algo.name != "rft":  # RFT takes no ratio
            from rlpractice.learner.device import learner_bf16

            learner = "bfloat16" if learner_bf16(cfg.learner) else "float32"
            # the update corrects for the engines' precision when it differs from the learner's forward: the
            # engines' log-probs then differ from the learner's for the same tokens
            cfg.algo.sampler_is = precision(cfg.sampler.engine.dtype) != learner
            chosen.append(f"algo.sampler_is {'on' if cfg.algo.sampler_is else 'off'} (engines "
                          f"{precision(cfg.sampler.engine.dtype)}, learner {learner})")
    if not chosen:
        return None
    return f"[hardware] {machine.kind}: " + ", ".join(chosen)
