"""What the benchmark scripts share (they import it, never each other): what every benchmark's JSON carries beside
its figures (the script, the commit, the machine and the command, so that scripts/benchmarks_doc.py can say where
a figure came from), and the random-weight Llamas the learner benchmarks build. Imports neither torch nor vLLM at
the top: the sampling benchmark's engine processes must set their threads before torch loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _output(args: list[str]) -> str | None:
    try:
        out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def commit() -> str | None:
    """The short commit of the checkout, with `+dirty` when tracked files differ from it."""
    head = _output(["git", "rev-parse", "--short", "HEAD"])
    if head and _output(["git", "status", "--porcelain", "--untracked-files=no"]):
        head += "+dirty"
    return head


def machine() -> dict:
    """Cores this process may use, the CPU model, whether it computes bf16 natively and its relevant flags
    (rlpractice/hardware.py), and the GPUs nvidia-smi lists (None without one)."""
    from rlpractice.hardware import probe

    gpus = _output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    return {**probe(cuda=bool(gpus)).record(), "gpu": ", ".join(gpus.splitlines()) if gpus else None}


def command() -> list[str]:
    """The argv, with the script's path relative to the repository when it lies inside it."""
    script = Path(sys.argv[0]).resolve()
    first = str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else sys.argv[0]
    return [first, *sys.argv[1:]]


SIZES = {  # hidden, layers, heads, kv heads, intermediate, vocab
    "tiny": (128, 4, 4, 4, 512, 768),
    "small": (512, 8, 8, 8, 1536, 8192),
    "0.5b": (896, 24, 14, 2, 4864, 151936),
}


def build(size: str):
    """A random-weight Llama of one of SIZES, from a config (no download); tiny is the default experiment's model,
    0.5b has Qwen2.5-0.5B's shape."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, kv, inter, vocab = SIZES[size]
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                        num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                                        max_position_embeddings=4096, tie_word_embeddings=False))


def meta() -> dict:
    """The fields benchmarks_doc.py reads besides the figures; put first in a result."""
    return {"script": Path(sys.argv[0]).name, "commit": commit(), "machine": machine(), "command": command()}


def alternate(run, repeats: int) -> tuple[list[dict], list[dict]]:
    """`run(False)` and `run(True)` in turn, `repeats` times each, after one warm-up each (compiled graphs, the
    prefix cache's first blocks, worker processes): the two sides see the same machine state."""
    run(False), run(True)
    plain, other = [], []
    for _ in range(repeats):
        plain.append(run(False))
        other.append(run(True))
    return plain, other


def median_rate(rows: list[dict], key: str) -> float:
    """The median over runs of `key` per second (each row has its `seconds`)."""
    import statistics

    return statistics.median(r[key] / r["seconds"] for r in rows)
