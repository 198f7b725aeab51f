"""How new weights reach the engines (`sampler.weight_sync`): one small class per mode, chosen once.

  filesystem    the learner saves a checkpoint to a path every node can read (one machine, or a shared disk);
                the engines reload it in place (vLLM `reload_weights`, no restart)
  object_store  the checkpoint's safetensors bytes travel through Ray's object store (any cluster) and each
                engine writes them to a node-local folder before reloading
  cuda_ipc      GPU engines on the learner's GPU read the weights where the learner keeps them (CUDA IPC
                handles, rollout/weight_transfer.py): no checkpoint, no copy through the host

Each mode answers the same questions: what an engine starts from (`start_args`), what it needs at start
(`engine_kwargs`, `engine_env`), how every engine gets the learner's weights (`push`), and how an engine
restarted later catches up (`catch_up`).
"""

from __future__ import annotations

import os
from pathlib import Path

import ray
import torch

from rlpractice.rollout import weight_transfer


class FilesystemSync:
    engine_kwargs: dict = {}
    engine_env: dict = {}

    def __init__(self, model_dir: str):
        self.current = os.fspath(model_dir)  # the newest weights; the tokenizer stays with the first checkpoint

    def start_args(self) -> tuple:
        """(weights, update) for a new SamplerActor: what it loads at start."""
        return self.current, None

    def push(self, actors: list, model, sync_dir: Path) -> float:
        """Every engine in `actors` serves `model`'s weights when this returns; seconds taken (max over engines)."""
        model.save_pretrained(sync_dir, safe_serialization=True)
        return self.push_dir(actors, sync_dir)

    def push_dir(self, actors: list, weights_dir: str | Path) -> float:
        """Every engine serves the HF checkpoint in `weights_dir` when this returns."""
        self.current = os.fspath(weights_dir)
        return max(ray.get([a.load_weights.remote(self.current) for a in actors]))

    def catch_up(self, actor) -> None:
        """A restarted engine started from `start_args`, which are already the newest weights."""


class ObjectStoreSync(FilesystemSync):
    def __init__(self, model_dir: str):
        super().__init__(model_dir)
        self.base = ship(model_dir, everything=True)  # the first checkpoint, tokenizer included
        self.update = None  # the newest weights, for engines started later

    def start_args(self) -> tuple:
        return self.base, self.update

    def push_dir(self, actors: list, weights_dir: str | Path) -> float:
        self.current = os.fspath(weights_dir)
        self.update = ship(self.current)
        return max(ray.get([a.load_weights.remote(self.update) for a in actors]))


class CudaIpcSync(FilesystemSync):
    engine_kwargs = weight_transfer.ENGINE_KWARGS
    engine_env = weight_transfer.ENGINE_ENV

    def __init__(self, model_dir: str):
        super().__init__(model_dir)
        self.model = None  # the learner's policy, once pushed (an engine restarted later reads it too)

    def push(self, actors: list, model, sync_dir: Path) -> float:
        self.model = model
        return self._send(actors)

    def _send(self, actors: list) -> float:
        info, tensors = weight_transfer.ipc_payload(self.model)
        seconds = max(ray.get([a.receive_weights.remote(info) for a in actors]))
        del tensors  # every engine has copied them
        torch.cuda.ipc_collect()
        return seconds

    def catch_up(self, actor) -> None:
        if self.model is not None:  # it started from the first checkpoint, older than the policy
            self._send([actor])


MODES = {"filesystem": FilesystemSync, "object_store": ObjectStoreSync, "cuda_ipc": CudaIpcSync}


def ship(folder: str | Path, everything: bool = False):
    """An object-store reference to a checkpoint's files: all of them for a new engine, only weights and
    config for a sync (the tokenizer stays)."""
    files = [p for p in Path(folder).iterdir() if p.is_file()]
    if not everything:
        files = [p for p in files if p.suffix == ".safetensors" or p.name == "config.json"]
    return ray.put({p.name: p.read_bytes() for p in files})
