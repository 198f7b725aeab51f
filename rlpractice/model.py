"""The policy: a standard HF Llama, built from scratch or loaded from an HF-format checkpoint.

Checkpoints are plain HF directories (config.json, model.safetensors, tokenizer files), so vLLM,
transformers and any other tool load them as they are.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from rlpractice.errors import UserError

# Head sizes vLLM's CPU attention kernels accept (vllm/v1/attention/backends/cpu_attn.py, 0.32); any other
# size loads fine and then kills the engine at its first generate.
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def new_model(tokenizer, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
              max_seq_len: int, seed: int) -> LlamaForCausalLM:
    head_dim, rest = divmod(hidden_size, num_heads)
    if rest or head_dim not in VLLM_CPU_HEAD_SIZES:
        raise UserError(f"model.hidden_size={hidden_size} / model.num_heads={num_heads} gives head size "
                         f"{hidden_size / num_heads:g}; vLLM's CPU kernels need one of {VLLM_CPU_HEAD_SIZES}")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_seq_len,
        tie_word_embeddings=False,  # vLLM reload_weights misses a tied lm_head (seen on 0.32 CPU)
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    return LlamaForCausalLM(config)


def load(path: str | Path):
    """(model, tokenizer) from an HF directory, with an error that says what is missing."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(f"model path {path} is not an HF checkpoint directory (no config.json there); "
                        "set model.path to a directory written by save_pretrained, or null to pretrain")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if model.config.tie_word_embeddings:
        # vLLM's in-place weight reload misses a tied lm_head (seen on 0.32 CPU), so the engines would
        # sample from stale output weights: untie, so both matrices are saved, synced and trained.
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone())
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # many released checkpoints have none; padding is masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def save(model, tokenizer, path: str | Path, extra: Callable[[Path], None] | None = None) -> Path:
    """Write an HF checkpoint atomically: into a temporary sibling, then rename over `path`, so a
    directory with the final name is always complete. `extra(tmp_dir)` may add more files first."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if extra is not None:
        extra(tmp)
    old = path.with_name(path.name + ".old")
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
