"""Check the composed config before anything runs: a bad value names its key and says what fits.

Types, allowed values and bounds of single keys come from the schema (config_schema.py); what is checked by
hand here are the rules that tie keys to each other or to the machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rlpractice.config_schema import check_values
from rlpractice.errors import UserError
from rlpractice.learner.device import pick_device

# Bytes the trainer holds per sampled token of one RL step (ids, text, grading): a generous estimate.
BYTES_PER_SAMPLED_TOKEN = 64


def check(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        also = f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""
        raise UserError(f"config key {missing[0]} is required by the chosen config groups; add "
                        f"{missing[0]}=... to the command line{also}")
    check_values(cfg)
    _check_verifier(cfg.verifier)
    for k in cfg.eval.k:
        if not 1 <= k <= cfg.eval.samples_per_problem:
            raise UserError(f"config key eval.k contains {k!r}: each k must be an integer in "
                            f"1..eval.samples_per_problem ({cfg.eval.samples_per_problem})")
    _check_cores(cfg)
    learner = cfg.learner
    if learner.num_workers > 1 and cfg.sampler.weight_sync == "cuda_ipc":
        raise UserError("config key sampler.weight_sync=cuda_ipc reads the weights from one learner process's GPU; "
                        "with learner.num_workers > 1 use filesystem or object_store (the ranks' weights are gathered)")
    if cfg.sampler.weight_sync == "cuda_ipc" and (not cfg.sampler.num_gpus_per_sampler
                                                  or pick_device(cfg.learner.device).type != "cuda"):
        raise UserError("config key sampler.weight_sync=cuda_ipc: the engines read the weights from the learner's GPU "
                        "memory, so it needs the learner on a CUDA GPU (learner.device) and GPU engines on the same "
                        "machine (sampler=vllm_gpu); use filesystem or object_store")
    if cfg.sampler.engine.get("enable_sleep_mode") and (not cfg.sampler.num_gpus_per_sampler or cfg.rl.max_staleness):
        raise UserError("config key sampler.engine.enable_sleep_mode=true frees the engines' GPU memory while the "
                        "learner trains: it needs GPU engines (sampler=vllm_gpu; vLLM has no sleep mode on CPU) and "
                        "rl.max_staleness=0 (sampling ahead, the engines generate while the learner trains)")
    if cfg.sampler.temperature == 0 and max(cfg.rl.samples_per_prompt, cfg.eval.samples_per_problem) > 1:
        raise UserError("config key sampler.temperature=0 is greedy decoding: every sample of a group would be the "
                        "same (and vLLM refuses n > 1); use a temperature > 0 for RL and evaluation")
    if cfg.model.path and not (Path(cfg.model.path) / "config.json").is_file():
        raise UserError(f"config key model.path={cfg.model.path}: not an HF checkpoint directory (no config.json "
                        "there); point it at a directory written by save_pretrained, or set it to null to pretrain")
    if cfg.model.path and cfg.model.max_seq_len:
        limit = json.loads((Path(cfg.model.path) / "config.json").read_text()).get("max_position_embeddings")
        if limit and cfg.model.max_seq_len > limit:
            raise UserError(f"config key model.max_seq_len={cfg.model.max_seq_len} is longer than the checkpoint "
                            f"{cfg.model.path} supports (max_position_embeddings={limit}); set model.max_seq_len="
                            f"{limit} or less, or null to use the checkpoint's limit")
    step_bytes = cfg.rl.prompts_per_step * cfg.rl.samples_per_prompt * cfg.sampler.max_new_tokens * \
        BYTES_PER_SAMPLED_TOKEN
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    if step_bytes > available // 2:
        raise UserError(f"rl.prompts_per_step x rl.samples_per_prompt x sampler.max_new_tokens = "
                        f"{cfg.rl.prompts_per_step} x {cfg.rl.samples_per_prompt} x {cfg.sampler.max_new_tokens} "
                        f"needs about {step_bytes / 2**30:.1f} GiB per RL step, more than half of the "
                        f"{available / 2**30:.1f} GiB free here; lower one of them")


def _check_cores(cfg: DictConfig) -> None:
    """The engines (and learner ranks) fit the local Ray instance's CPUs."""
    if "auto" in (cfg.sampler.num_samplers, cfg.sampler.num_cpus_per_sampler, cfg.cluster.num_cpus):
        return  # counted once hardware.resolve has chosen them (a run resolves before it checks)
    wanted = cfg.sampler.num_samplers * cfg.sampler.num_cpus_per_sampler
    if not cfg.cluster.address and cfg.cluster.num_cpus and wanted > cfg.cluster.num_cpus:
        raise UserError(f"config key sampler.num_samplers={cfg.sampler.num_samplers}: {cfg.sampler.num_samplers} "
                        f"engines x sampler.num_cpus_per_sampler={cfg.sampler.num_cpus_per_sampler:g} need {wanted:g} "
                        f"CPUs, the local Ray instance has cluster.num_cpus={cfg.cluster.num_cpus}; lower one or "
                        "raise cluster.num_cpus")
    learner = cfg.learner
    ranks = learner.num_workers * learner.num_cpus_per_worker if learner.num_workers > 1 else 0
    if ranks and not cfg.cluster.address and cfg.cluster.num_cpus and wanted + ranks > cfg.cluster.num_cpus:
        raise UserError(f"config key learner.num_workers={learner.num_workers}: the ranks x "
                        f"learner.num_cpus_per_worker={learner.num_cpus_per_worker:g} beside the engines' {wanted:g} "
                        f"CPUs need {wanted + ranks:g}, the local Ray instance has cluster.num_cpus="
                        f"{cfg.cluster.num_cpus}; raise cluster.num_cpus, or lower either")


def _check_verifier(verifier: DictConfig) -> None:
    """The verifier group is an open mapping in the schema until its keys settle: its numbers are checked here."""
    for key, low in (("num_workers", 1), ("timeout_s", 0)):
        value = verifier.get(key, low)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
            raise UserError(f"config key verifier.{key}={value!r}: expected a number >= {low}")
    for name, weight in (verifier.get("weights") or {}).items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise UserError(f"config key verifier.weights.{name}={weight!r}: expected a number (the weight of "
                            f"verifier {name!r} in the reward)")


def check_writable(run_dir: Path) -> None:
    probe = run_dir / ".write_test"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to the run directory {run_dir} ({e.strerror}); "
                        "choose another with hydra.run.dir=...") from e
