"""Where the tools rlpractice drives keep their caches: one folder, `cache_dir` in the config.

Left alone, W&B writes debug logs under ~/.cache/wandb and torch's compiler (used by vLLM) writes kernels
under /tmp/torchinductor_<user>. Pointing them into one folder keeps every file a run writes either in its
run directory or in that cache. (Ray's session files go to `cluster.temp_dir`, by default /tmp/ray.)
A variable the user has set already wins.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_VARIABLES = {  # environment variable -> sub-folder of cache_dir
    "WANDB_CACHE_DIR": "wandb", "WANDB_DATA_DIR": "wandb", "WANDB_CONFIG_DIR": "wandb/config",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor", "TRITON_CACHE_DIR": "triton", "VLLM_CACHE_ROOT": "vllm",
}


def use_cache_dir(cache_dir: str | Path) -> dict[str, str]:
    """Set the cache variables (unless already set) for this process and the ones it starts; return them."""
    for name, sub in CACHE_VARIABLES.items():
        os.environ.setdefault(name, str(Path(cache_dir).expanduser() / sub))
    return {name: os.environ[name] for name in CACHE_VARIABLES}
