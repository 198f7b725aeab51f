"""Stage 1, exposition -> pretraining: a tokenizer and a tiny Llama trained from scratch on the book."""

from __future__ import annotations

import random

import torch
from omegaconf import DictConfig
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from rlpractice.learner import Sequence, lm_step, pick_device
from rlpractice.model import new_model, num_params
from rlpractice.tokenizer import train_tokenizer


def blocks(texts: list[str], tokenizer, block_size: int) -> list[list[int]]:
    """The whole book as one token stream (documents separated by EOS), cut into equal blocks."""
    stream: list[int] = []
    for ids in tokenizer(texts)["input_ids"]:
        stream.extend(ids + [tokenizer.eos_token_id])
    return [stream[i : i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)]


def run_pretrain(cfg: DictConfig, exposition: list[str], tracker, seed: int):
    m, p = cfg.model, cfg.pretrain
    tokenizer = train_tokenizer(exposition, m.vocab_size)
    model = new_model(tokenizer, m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size,
                      m.max_seq_len, seed).to(pick_device(cfg.learner.device))
    data = blocks(exposition, tokenizer, p.block_size)
    print(f"[pretrain] {num_params(model) / 1e6:.2f}M params, vocab {len(tokenizer)}, "
          f"{len(data) * p.block_size / 1e6:.2f}M tokens in {len(data)} blocks")
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay, betas=(0.9, 0.95))
    schedule = get_cosine_schedule_with_warmup(optimizer, p.warmup_steps, p.steps)
    rng = random.Random(seed)
    bar = tqdm(range(1, p.steps + 1), desc="pretrain", unit="step", dynamic_ncols=True)
    for step in bar:
        batch = [Sequence(ids, [1] * len(ids)) for ids in rng.sample(data, min(p.batch_size, len(data)))]
        loss = lm_step(model, optimizer, batch, tokenizer.pad_token_id, p.token_budget, p.grad_clip)
        schedule.step()
        bar.set_postfix(loss=f"{loss:.3f}")
        if step % p.log_every == 0 or step == p.steps:
            tracker.log("pretrain", step, {"loss": loss, "lr": schedule.get_last_lr()[0]})
    return model, tokenizer
