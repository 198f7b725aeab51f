"""Stage 1, exposition -> pretraining: a tokenizer and a tiny Llama trained from scratch on the book."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from rlpractice import model as policy
from rlpractice.learner.device import place, trainer_device
from rlpractice.learner.forward import Sequence
from rlpractice.stages.lm_training import resume_point, train_lm
from rlpractice.tokenizer import train_tokenizer


def blocks(texts: list[str], tokenizer, block_size: int) -> list[list[int]]:
    """The whole book as one token stream (documents separated by EOS), cut into equal blocks."""
    stream: list[int] = []
    for ids in tokenizer(texts)["input_ids"]:
        stream.extend(ids + [tokenizer.eos_token_id])
    return [stream[i : i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)]


def run_pretrain(cfg: DictConfig, exposition: list[str], tracker, steps_dir: Path | None = None):
    """Train tokenizer and model (seeded by cfg.seed); checkpoints go to `steps_dir` (None: none), resumed from with
    resume=true."""
    m, p = cfg.model, cfg.pretrain
    resume_from = resume_point(cfg, steps_dir)
    if resume_from is not None:  # the tokenizer is the one trained before the stop: the model's ids mean its tokens
        model, tokenizer = policy.load(resume_from)
    else:
        tokenizer = train_tokenizer(exposition, m.vocab_size)
        model = policy.new_model(tokenizer, m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size,
                                 m.max_seq_len, cfg.seed)
    place(model, trainer_device(cfg.learner))
    data = [Sequence(ids, [1] * len(ids)) for ids in blocks(exposition, tokenizer, p.block_size)]
    print(f"[pretrain] {policy.num_params(model) / 1e6:.2f}M params, vocab {len(tokenizer)}, "
          f"{len(data) * p.block_size / 1e6:.2f}M tokens in {len(data)} blocks")
    return train_lm("pretrain", cfg, model, tokenizer, data, tracker, steps_dir, resume_from), tokenizer
