"""Where the tools rlpractice drives keep their caches: one folder, `cache_dir` in the config.

Left alone, W&B writes debug logs under ~/.cache/wandb and torch's compiler (used by vLLM) writes kernels
under /tmp/torchinductor_<user>. Pointing them into one folder keeps every file a run writes either in its
run directory or in that cache. (Ray's session files go to `cluster.temp_dir`, by default /tmp/ray.)
A variable the user has set already wins.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_VARIABLES = {  # environment variable -> sub-folder of cache_dir
    "WANDB_CACHE_DIR": "wandb", "WANDB_DATA_DIR": "wandb", "WANDB_CONFIG_DIR": "wandb/config",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor", "TRITON_CACHE_DIR": "triton", "VLLM_CACHE_ROOT": "vllm",
}


def set_by_torch(name: str) -> bool:
    """Whether torch, not the user, set this variable: importing torch's inductor (transformers does) writes its
    /tmp default into TORCHINDUCTOR_CACHE_DIR, which would otherwise win over cache_dir for the engines too."""
    if name != "TORCHINDUCTOR_CACHE_DIR" or "torch" not in sys.modules:
        return False
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    return os.environ.get(name) == os.path.abspath(default_cache_dir())


def use_cache_dir(cache_dir: str | Path) -> dict[str, str]:
    """Set the cache variables (unless the user set them) for this process and the ones it starts; return them."""
    for name, sub in CACHE_VARIABLES.items():
        if name not in os.environ or set_by_torch(name):
            os.environ[name] = str(Path(cache_dir).expanduser() / sub)
    return {name: os.environ[name] for name in CACHE_VARIABLES}
