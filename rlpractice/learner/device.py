"""Where the learner computes and in what precision: its device, bf16 autocast or fp32, its CPU threads."""

from __future__ import annotations

import contextlib

import torch
from omegaconf import DictConfig

from rlpractice.errors import UserError
from rlpractice.learner.onednn import OneDNNLinears, onednn_available


def pick_device(name: str) -> torch.device:
    """`learner.device`: auto (CUDA when there is a GPU, else CPU), cpu, cuda, cuda:1, ..."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"config key learner.device={name}: no CUDA GPU is visible here; use auto or cpu")
    return device


def place(model, device_name: str) -> None:
    """Move the policy to `learner.device`. On a CPU its attention runs as plain matmuls (HF "eager"):
    as fast as SDPA in fp32 there, while SDPA's CPU kernel is slow backward under bf16 autocast."""
    device = pick_device(device_name)
    model.to(device)
    if device.type == "cpu":
        model.set_attn_implementation("eager")


def trainer_device(learner: DictConfig) -> str:
    """Where the trainer keeps the policy: on `learner.device` when it learns in this process, else a full copy
    on the CPU (the ranks hold the working shards)."""
    return learner.device if learner.num_workers == 1 else "cpu"


def use_bf16(setting: str | bool, device: torch.device) -> bool:
    """`learner.bf16`: auto = on CUDA only; true / false force it. A CPU learner stays fp32 by default: bf16
    autocast there learns a little faster but ends lower in held-out pass@1 and holds more memory."""
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)


def learner_on_cuda(learner: DictConfig) -> bool:
    """Whether the learning runs on a GPU (the ranks': when they are given GPUs)."""
    if learner.num_workers == 1:
        return pick_device(learner.device).type == "cuda"
    return learner.device.startswith("cuda") or (learner.device == "auto" and learner.num_gpus_per_worker > 0)


def learner_bf16(learner: DictConfig) -> bool:
    """`learner.bf16` (RL's forwards) resolved for the device the learning runs on."""
    return use_bf16(learner.bf16, torch.device("cuda" if learner_on_cuda(learner) else "cpu"))


def lm_bf16(learner: DictConfig) -> bool:
    """`learner.lm_bf16` (pretraining's and SFT's forwards); `auto` left unresolved (no hardware probe ran) follows
    learner.bf16."""
    return learner_bf16(learner) if learner.get("lm_bf16", "auto") == "auto" else bool(learner.lm_bf16)


_cpu_linear = "auto"  # learner.cpu_linear of this process: set once by `use_cpu_settings`


def use_cpu_settings(threads: int | None = None, cpu_linear: str = "auto") -> None:
    """This process's CPU learner settings (learner.threads, learner.cpu_linear; hardware.py resolves `auto`)."""
    global _cpu_linear
    if threads:
        torch.set_num_threads(int(threads))
    _cpu_linear = cpu_linear


def precision(device: torch.device | str, bf16: bool):
    """The learner forward's context: bf16 autocast (fp32 weights, gradients and optimizer; log-probs are taken in
    fp32 from the logits), or fp32: on a CPU with the linear layers through oneDNN (onednn.py; nothing changes where
    oneDNN is missing or learner.cpu_linear=aten)."""
    if bf16:
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    if torch.device(device).type == "cpu" and _cpu_linear != "aten" and onednn_available():
        return OneDNNLinears()
    return contextlib.nullcontext()
