"""Check the composed config before anything runs: a bad value names its key and says what fits.

Hydra already rejects unknown keys; this catches values of the wrong type or out of range, which
would otherwise surface minutes later as a traceback deep inside a stage.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rlpractice.errors import UserError
from rlpractice.learner import pick_device

# key -> (type, smallest allowed value); a float key also accepts an int
NUMBERS = {
    "seed": (int, 0),
    "pretrain.steps": (int, 0), "pretrain.batch_size": (int, 1), "pretrain.block_size": (int, 8),
    "pretrain.lr": (float, 0.0), "sft.steps": (int, 0), "sft.batch_size": (int, 1), "sft.lr": (float, 0.0),
    "rl.steps": (int, 0), "rl.prompts_per_step": (int, 1), "rl.samples_per_prompt": (int, 1),
    "rl.eval_every": (int, 0), "rl.max_staleness": (int, 0), "rl.time_budget_s": (float, 0.0),
    "rl.checkpoint_every": (int, 0), "rl.logprob_mismatch_every": (int, 0), "rl.keep_checkpoints": (int, 1),
    "pretrain.checkpoint_every": (int, 0), "pretrain.keep_checkpoints": (int, 1),
    "sft.checkpoint_every": (int, 0), "sft.keep_checkpoints": (int, 1),
    "eval.samples_per_problem": (int, 1),
    "textbook.exposition_paragraphs": (int, 0), "textbook.worked": (int, 1), "textbook.practice": (int, 1),
    "textbook.heldout": (int, 1), "textbook.answer_only": (float, 0.0),
    "model.hidden_size": (int, 32), "model.num_layers": (int, 1), "model.num_heads": (int, 1),
    "model.max_seq_len": (int, 16), "data.heldout_size": (int, 1),
    "sampler.num_samplers": (int, 1), "sampler.temperature": (float, 0.0), "sampler.top_p": (float, 0.0),
    "sampler.max_new_tokens": (int, 1), "sampler.max_samples_per_request": (int, 1),
    "sampler.num_cpus_per_sampler": (float, 0.0),
    "algo.lr": (float, 0.0), "algo.epsilon_low": (float, 0.0), "algo.epsilon_high": (float, 0.0),
    "algo.num_iterations": (int, 1), "algo.minibatches": (int, 1), "algo.token_budget": (int, 1),
    "verifier.num_workers": (int, 1), "verifier.timeout_s": (float, 0.0),
}
# Bytes the trainer holds per sampled token of one RL step (ids, text, grading): a generous estimate.
BYTES_PER_SAMPLED_TOKEN = 64


_ABSENT = object()


def check(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        also = f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""
        raise UserError(f"config key {missing[0]} is required by the chosen config groups; add "
                        f"{missing[0]}=... to the command line{also}")
    for key, (kind, low) in NUMBERS.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:  # a group that does not have this knob (e.g. model=hf has no hidden_size)
            continue
        ok_type = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if isinstance(value, bool) or not ok_type:
            raise UserError(f"config key {key}={value!r}: expected {'a number' if kind is float else 'an integer'}")
        if value < low:
            raise UserError(f"config key {key}={value!r}: must be >= {low}")
    if cfg.textbook.answer_only > 1:
        raise UserError(f"config key textbook.answer_only={cfg.textbook.answer_only}: a share, between 0 and 1")
    for k in cfg.eval.k:
        if not isinstance(k, int) or not 1 <= k <= cfg.eval.samples_per_problem:
            raise UserError(f"config key eval.k contains {k!r}: each k must be an integer in "
                            f"1..eval.samples_per_problem ({cfg.eval.samples_per_problem})")
    for name, weight in (cfg.verifier.weights or {}).items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise UserError(f"config key verifier.weights.{name}={weight!r}: expected a number (the weight of "
                            f"verifier {name!r} in the reward)")
    wanted = cfg.sampler.num_samplers * cfg.sampler.num_cpus_per_sampler
    if not cfg.cluster.address and cfg.cluster.num_cpus and wanted > cfg.cluster.num_cpus:
        raise UserError(f"config key sampler.num_samplers={cfg.sampler.num_samplers}: {cfg.sampler.num_samplers} "
                        f"engines x sampler.num_cpus_per_sampler={cfg.sampler.num_cpus_per_sampler} need {wanted:g} "
                        f"CPUs, the local Ray instance has cluster.num_cpus={cfg.cluster.num_cpus}; lower one or "
                        "raise cluster.num_cpus")
    if cfg.learner.bf16 not in ("auto", True, False):
        raise UserError(f"config key learner.bf16={cfg.learner.bf16!r}: expected auto, true or false")
    if not isinstance(cfg.learner.share_prompts, bool):
        raise UserError(f"config key learner.share_prompts={cfg.learner.share_prompts!r}: expected true or false")
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
    step_bytes = cfg.rl.prompts_per_step * cfg.rl.samples_per_prompt * cfg.sampler.max_new_tokens * \
        BYTES_PER_SAMPLED_TOKEN
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    if step_bytes > available // 2:
        raise UserError(f"rl.prompts_per_step x rl.samples_per_prompt x sampler.max_new_tokens = "
                        f"{cfg.rl.prompts_per_step} x {cfg.rl.samples_per_prompt} x {cfg.sampler.max_new_tokens} "
                        f"needs about {step_bytes / 2**30:.1f} GiB per RL step, more than half of the "
                        f"{available / 2**30:.1f} GiB free here; lower one of them")


def check_writable(run_dir: Path) -> None:
    probe = run_dir / ".write_test"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to the run directory {run_dir} ({e.strerror}); "
                        "choose another with hydra.run.dir=...") from e
