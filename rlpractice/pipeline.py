"""The whole textbook, in order: exposition -> pretrain, worked -> SFT, [preference pairs -> reward model,]
practice -> RL, held-out -> eval.

Writes into the run directory: checkpoints/{pretrain,sft,rm,rl}/ (HF format), checkpoints/{pretrain,sft,rm,rl}_steps/
(resumable checkpoints within a stage, see checkpoint.py), metrics.jsonl, rollouts.jsonl, pass_rates.png
(over_optimisation.png with a reward model), summary.json, and wandb/ (the W&B run, offline unless configured).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from transformers.utils import logging as hf_logging

from rlpractice import hardware
from rlpractice import model as policy
from rlpractice.caches import use_cache_dir
from rlpractice.checkpoint import latest_state
from rlpractice.config_checks import check, check_writable
from rlpractice.environments.settings import episode_settings
from rlpractice.environments.tool_env import make_runner, tool_settings
from rlpractice.errors import UserError
from rlpractice.grading.pool import GradingPool
from rlpractice.grading.registry import check_verifiers
from rlpractice.learner.device import place, trainer_device, use_cpu_settings
from rlpractice.reward.report import report as rlhf_report
from rlpractice.reward.rewards import check_reward
from rlpractice.stages.pretrain import run_pretrain
from rlpractice.stages.reward_model import reward_model_stage
from rlpractice.stages.rl import Results, run_rl
from rlpractice.stages.sft import run_sft
from rlpractice.textbook.gold import drop_ungradable
from rlpractice.textbook.problems import Textbook
from rlpractice.textbook.prompts import with_chat_template
from rlpractice.textbook.sources import load_book
from rlpractice.textbook.tool_textbook import calculator_textbook
from rlpractice.tracking import Tracker, plot_pass_rates


def run(cfg: DictConfig, run_dir: Path) -> dict:
    start = time.time()
    prepare(cfg, run_dir)
    book = load_book(cfg)  # before anything is written: a bad dataset leaves no half-made run behind
    episode_settings(cfg)  # an environment and tools together: one line now
    tools = tool_settings(cfg)  # None: no tools
    runner = make_runner(tools) if tools else None  # here too: a sandbox that cannot isolate stops the run now
    if tools and cfg.tools.textbook_calls and cfg.data.source == "textbook" and "calculator" in tools.names:
        book = calculator_textbook(book)
    tracker, pool, ckpt = Tracker(cfg, run_dir), None, run_dir / "checkpoints"
    try:
        pool = GradingPool.from_config(cfg.verifier)
        book = checked(cfg, book, pool)
        # On resume, start from the furthest finished point: an RL step, else SFT, else pretraining; a stage
        # stopped part-way continues from its own step checkpoints (run_pretrain, run_sft, run_rm).
        rl_state = latest_state(ckpt / "rl_steps") if cfg.resume else None
        model, tokenizer, done = pretrained(cfg, book, tracker, ckpt, rl_state)  # stage 1
        book = with_chat_template(book, tokenizer, cfg.model)
        if done is None or done.name == "pretrain":  # stage 2
            if cfg.sft.steps > 0 and book.worked:
                model = run_sft(cfg, model, tokenizer, book.worked, tracker, ckpt / "sft_steps", runner)
            elif cfg.sft.steps > 0:
                print("[sft] skipped: the data has no worked solutions (answer_format=plain)")
            policy.save(model, tokenizer, ckpt / "sft")
            shutil.rmtree(ckpt / "sft_steps", ignore_errors=True)
        reward_path = reward_model_stage(cfg, ckpt, tracker)  # stage rm with reward.model=train; None: no reward model
        results = run_rl(cfg, model, tokenizer, book, pool, tracker, run_dir, rl_state)  # stage 3
        if cfg.rl.steps > 0:
            policy.save(model, tokenizer, ckpt / "rl")
        summary = summarise(cfg, book, results, time.time() - start, run_dir)
        if reward_path is not None and results.steps:  # proxy vs gold against sqrt(KL): over_optimisation.png
            summary |= {"reward_model": str(reward_path), **rlhf_report(run_dir, tracker)}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        plot_pass_rates(run_dir / "metrics.jsonl", run_dir / "pass_rates.png")
        tracker.finish(summary)
        return summary
    finally:
        if pool is not None:
            pool.close()
        if runner is not None:
            runner.close()


def prepare(cfg: DictConfig, run_dir: Path) -> None:
    """The settings this machine gets (`auto`), the checks of the config and of the run directory, the caches and
    this process's CPU settings; config.yaml records the configuration as run (.hydra/ has the one asked for)."""
    hf_logging.disable_progress_bar()  # a "Writing model shards" bar per RL step would bury ours
    if chosen := hardware.resolve(cfg):  # `auto` knobs from what this machine has
        print(chosen, flush=True)
    check(cfg)
    check_verifiers(cfg.verifier)  # a broken verifier plugin: one line, before anything starts
    check_reward(cfg)  # likewise a reward.model RL cannot use
    check_writable(run_dir)
    if (run_dir / "metrics.jsonl").exists() and not cfg.resume:
        raise UserError(f"{run_dir} already holds a run (metrics.jsonl); add resume=true to continue it, "
                        "or choose another hydra.run.dir. Nothing was changed.")
    use_cache_dir(cfg.cache_dir)
    use_cpu_settings(cfg.learner.threads, cfg.learner.cpu_linear)
    OmegaConf.save(cfg, run_dir / "config.yaml")


def checked(cfg: DictConfig, book: Textbook, pool: GradingPool) -> Textbook:
    """The data with the gold answers the verifier cannot grade dropped (data.check_gold), said in one line."""
    if cfg.data.source == "file" and cfg.data.check_gold:
        book.practice = drop_ungradable(book.practice, pool, cfg.data.skip_bad)
        book.heldout = drop_ungradable(book.heldout, pool, cfg.data.skip_bad)
    print(f"[data] {len(book.exposition)} exposition texts, {len(book.worked)} worked, "
          f"{len(book.practice)} practice, {len(book.heldout)} held-out problems")
    if not book.worked and not cfg.model.path:
        print("[data] warning: the data has no worked solutions and the model is trained from scratch, so SFT "
              "has nothing to teach: the model will not learn to write an answer the verifier reads, and RL "
              "gets no reward to learn from. Add worked solutions, or start from a pretrained model "
              "(model=hf model.path=...)", flush=True)
    return book


def pretrained(cfg: DictConfig, book: Textbook, tracker, ckpt: Path, rl_state: Path | None):
    """(model, tokenizer, the checkpoint they come from): the furthest finished point when resuming (None: none),
    else model.path, else stage 1, pretraining from scratch; on the learner's device."""
    done = next((d for d in ([rl_state] if rl_state else []) + [ckpt / "sft", ckpt / "pretrain"]
                 if cfg.resume and (d / "config.json").is_file()), None)
    if done is not None:
        model, tokenizer = policy.load(done)
        print(f"[resume] continuing from {done}")
    elif cfg.model.path:
        model, tokenizer = policy.load(cfg.model.path)
        print(f"[model] loaded {cfg.model.path} ({policy.num_params(model) / 1e6:.2f}M params); no pretraining")
    else:
        model, tokenizer = run_pretrain(cfg, book.exposition, tracker, ckpt / "pretrain_steps")
        policy.save(model, tokenizer, ckpt / "pretrain")
        shutil.rmtree(ckpt / "pretrain_steps", ignore_errors=True)  # the final checkpoint replaces them
    place(model, trainer_device(cfg.learner))
    return model, tokenizer, done


def summarise(cfg: DictConfig, book: Textbook, results: Results, seconds: float, run_dir: Path) -> dict:
    """summary.json: pass rates after SFT and after RL (with tools off too, for a run with tools), and the run."""
    sft, rl, tools = results.sft, results.rl, tool_settings(cfg)
    return {
        "sft_pass_at_1": sft["pass@1"],
        "rl_pass_at_1": rl["pass@1"],
        "rl_gain": rl["pass@1"] - sft["pass@1"],
        **{f"{stage}_{k}": v for stage, r in (("sft", sft), ("rl", rl)) for k, v in r.items()
           if k.startswith(("pass@", "maj@", "level", "tools/", "env/", "first_attempt", "success_within",
                            "independent_pass@"))},  # tools/, env/: evaluated with the run's tools or environment
        **({"tools": tools.names} if tools else {}),
        **({"env": cfg.env.name} if cfg.env.name else {}),
        **{f"{stage}_pass_at_1_no_tools": r["pass@1"] for stage, r in results.without_tools.items()},
        "heldout_problems": len(book.heldout),
        "eval_samples_per_problem": cfg.eval.samples_per_problem,
        "eval_temperature": cfg.sampler.temperature,
        "rl_steps": results.steps,
        "samples_per_prompt": cfg.rl.samples_per_prompt,
        "prompts_per_step": cfg.rl.prompts_per_step,
        "wall_seconds": seconds,
        "run_dir": str(run_dir),
    }
