"""The policy learning as N ranks (`learner.num_workers` > 1; local.py is one process): Ray actors in one placement
group and one torch.distributed group, the policy sharded with FSDP2, which keeps 1/N of the weights, gradients and
AdamW state on each rank and, unlike DDP, takes `learner.share_prompts`' two forwards per backward.

Each step every rank runs steps.py on its share of the groups with the whole batch's normalisers, and the ranks'
gradients are summed (FSDP2 would average them: its divide factor is set to 1, pytorch issue 162338), so the step
is the one-process step (tests/test_learner_group.py). The trainer keeps a full CPU copy, refreshed when the engines
or a checkpoint need it; checkpoints hold full tensors, so a run resumes with any N. More: docs/scaling.md.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import ray
import torch
from omegaconf import DictConfig
from ray.util.placement_group import remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rlpractice.algorithm.settings import LossSettings
from rlpractice.cluster import place_group, start_ray
from rlpractice.learner.device import pick_device, place, use_cpu_settings
from rlpractice.learner.forward import Sequence, prompt_length
from rlpractice.learner.local import LocalLearner
from rlpractice.learner.steps import target_tokens


def make_learner(model, learner: DictConfig, cluster: DictConfig):
    """The learner `learner.num_workers` asks for, starting from `model`'s weights: this process, or N ranks."""
    return LocalLearner(model) if learner.num_workers == 1 else LearnerGroup(model, learner, cluster)


def shares(seqs: list[Sequence], n: int) -> list[list[int]]:
    """Indices of `seqs` for each of `n` ranks. Sequences continuing the same prompt stay together (one rank runs
    that prompt once); the largest pieces go first, each to the rank with the fewest tokens so far."""
    pieces: dict[object, list[int]] = {}
    for i, s in enumerate(seqs):
        p = prompt_length(s)
        pieces.setdefault(tuple(s.ids[:p]) if p else i, []).append(i)
    tokens, out = [0] * n, [[] for _ in range(n)]
    for piece in sorted(pieces.values(), key=lambda p: -sum(len(seqs[i].ids) for i in p)):
        rank = tokens.index(min(tokens))
        out[rank] += piece
        tokens[rank] += sum(len(seqs[i].ids) for i in piece)
    return [sorted(o) for o in out]


@dataclass
class RemoteState:
    """The ranks' optimizer or LR schedule as checkpoint.py sees one: state_dict / load_state_dict (full tensors,
    laid out as a single process's optimizer)."""

    state_dict: Callable[[], dict]
    load_state_dict: Callable[[dict], None]


class LearnerGroup:
    """N learner ranks (`LearnerRank` actors) with the interface of `LocalLearner`; each step splits the sequences
    over the ranks (a group's samples on one rank) and waits for all of them."""

    def __init__(self, model, learner: DictConfig, cluster: DictConfig):
        start_ray(cluster)
        n = learner.num_workers
        bundle = {"CPU": learner.num_cpus_per_worker}
        if learner.num_gpus_per_worker:
            bundle["GPU"] = learner.num_gpus_per_worker
        self.group = place_group("learner ranks", bundle, n, learner.placement, cluster,
                                 "The engines hold their share. Lower learner.num_workers or learner.num_cpus_per_"
                                 "worker/num_gpus_per_worker, or give Ray more (cluster.num_cpus, or more nodes)")
        threads = max(1, int(learner.num_cpus_per_worker))
        self.ranks = [LearnerRank.options(
            num_cpus=learner.num_cpus_per_worker, num_gpus=learner.num_gpus_per_worker,
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=i),
        ).remote(i, n, learner.device, threads, learner.get("cpu_linear", "auto")) for i in range(n)]
        address, port = ray.get(self.ranks[0].address.remote())
        state = ray.put({k: v.detach().cpu() for k, v in model.state_dict().items()})
        backend = ray.get([r.setup.remote(address, port, model.config, state) for r in self.ranks])[0]
        print(f"[learner] {n} ranks ready (FSDP2 over {backend}, {bundle} each)", flush=True)
        self.model = model.cpu()  # the full copy the trainer keeps (`full_model`)
        self.stale = False  # whether the ranks have stepped since `model` was refreshed
        self.optimizer = RemoteState(lambda: self._each(lambda r: r.optimizer_state.remote())[0],
                                     self._load_optimizer)
        self.schedule = None

    def _each(self, call: Callable) -> list:
        """`call(rank)` on every rank at once (they meet in collectives), and wait for all."""
        return ray.get([call(r) for r in self.ranks])

    def _load_optimizer(self, state: dict) -> None:
        ref = ray.put(state)
        self._each(lambda r: r.load_optimizer_state.remote(ref))

    def _load_schedule(self, state: dict) -> None:
        self._each(lambda r: r.load_schedule_state.remote(state))

    def _split(self, seqs: list[Sequence]) -> tuple[list[list[int]], list[list[Sequence]]]:
        """Each rank's share of `seqs` (`shares`), as indices and as sequences."""
        parts = shares(seqs, len(self.ranks))
        return parts, [[seqs[i] for i in p] for p in parts]

    def nodes(self) -> list[str]:
        """The Ray node id each rank runs on."""
        return self._each(lambda r: r.node.remote())

    def start(self, lr: float, weight_decay: float, betas: tuple[float, float], warmup_steps: int = 0,
              total_steps: int = 0) -> None:
        self._each(lambda r: r.start.remote(lr, weight_decay, betas, warmup_steps, total_steps))
        self.schedule = RemoteState(lambda: self._each(lambda r: r.schedule_state.remote())[0], self._load_schedule) \
            if total_steps else None

    def lm_step(self, seqs: list[Sequence], **kw) -> float:
        _, mine = self._split(seqs)
        self.stale = True
        return sum(ray.get([r.lm_step.remote(m, total_targets=target_tokens(seqs), **kw)
                            for r, m in zip(self.ranks, mine, strict=True)]))

    def logprobs(self, seqs: list[Sequence], **kw) -> list[torch.Tensor]:
        parts, mine = self._split(seqs)
        out: list[torch.Tensor | None] = [None] * len(seqs)
        for part, logps in zip(parts, ray.get([r.logprobs.remote(m, **kw) for r, m in zip(self.ranks, mine,
                                                                                           strict=True)]), strict=True):
            for i, lp in zip(part, logps, strict=True):
                out[i] = lp
        return out  # type: ignore[return-value]

    def policy_gradient_step(self, seqs: list[Sequence], loss: LossSettings, totals: tuple[int, int] | None = None,
                             **kw) -> dict:
        _, mine = self._split(seqs)
        self.stale = True
        totals = totals or (len(seqs), target_tokens(seqs))
        metrics = ray.get([r.policy_gradient_step.remote(m, loss, totals=totals, **kw)
                           for r, m in zip(self.ranks, mine, strict=True)])
        return combine(metrics, [target_tokens(m) for m in mine])

    def schedule_step(self) -> None:
        if self.schedule is not None:
            self._each(lambda r: r.schedule_step.remote())

    def lr(self) -> float:
        return ray.get(self.ranks[0].lr.remote())

    def full_model(self):
        if self.stale:
            self.model.load_state_dict(self._each(lambda r: r.model_state.remote())[0])
            self.stale = False
        return self.model

    def close(self) -> None:
        for rank in self.ranks:
            ray.kill(rank)
        remove_placement_group(self.group)


def combine(metrics: list[dict], tokens: list[int]) -> dict:
    """One step's metrics from the ranks': the loss is a sum (each rank's share was divided by the whole batch's
    normaliser); the gradient norm is the same on every rank; per-token averages are weighted by the ranks' tokens."""
    out = {"loss": sum(m["loss"] for m in metrics), "grad_norm": metrics[0]["grad_norm"]}
    for key in metrics[0]:
        if key not in out:
            have = [(m[key], t) for m, t in zip(metrics, tokens, strict=True) if key in m and t]
            out[key] = sum(v * t for v, t in have) / max(sum(t for _, t in have), 1)
    return out


@ray.remote
class LearnerRank(LocalLearner):
    """One learner rank: a `LocalLearner` whose policy is a shard (FSDP2), with its AdamW state and LR schedule; it
    runs steps.py's steps on the share of each batch the trainer gives it."""

    def __init__(self, rank: int, world: int, device: str, threads: int, cpu_linear: str = "auto"):
        super().__init__(None)  # the policy comes with `setup`
        self.rank, self.world = rank, world
        self.device = pick_device(device)  # a GPU Ray gave this actor is its cuda:0
        use_cpu_settings(threads, cpu_linear)

    def address(self) -> tuple[str, int]:
        """Where rank 0 listens for the others: this node's address and a free port."""
        with socket.socket() as s:
            s.bind(("", 0))
            return ray.util.get_node_ip_address(), s.getsockname()[1]

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def setup(self, address: str, port: int, config, state: dict) -> str:
        """Join the process group, build the policy from `config` with the weights `state`, and shard it; returns
        the process group's backend."""
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import FSDPModule, fully_shard
        from transformers import AutoModelForCausalLM

        dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo",
                                init_method=f"tcp://{address}:{port}", rank=self.rank, world_size=self.world,
                                timeout=timedelta(minutes=10))
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(state)
        place(model, str(self.device))
        # an explicit mesh on the learner's device: FSDP2 would otherwise pick CUDA wherever one is visible
        mesh = init_device_mesh(self.device.type, (self.world,))
        blocks = set(getattr(model, "_no_split_modules", None) or [])  # HF's name for a transformer block's class
        for module in model.modules():
            if type(module).__name__ in blocks:
                fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)
        for module in model.modules():  # each block reduces its own gradients: tell every one
            if isinstance(module, FSDPModule):
                module.set_gradient_divide_factor(1.0)  # sum the ranks' gradients: each share is already normalised
                module.set_force_sum_reduction_for_comms(True)  # a plain SUM: gloo has no pre-scaled one (PREMUL_SUM)
        self.model = model
        return dist.get_backend()

    def model_state(self) -> dict | None:
        """The full weights, on rank 0 (every rank must call: the shards are gathered)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return full if self.rank == 0 else None

    def optimizer_state(self) -> dict | None:
        """The optimizer's full state as a single process's `optimizer.state_dict()` lays it out (parameters by
        index), on rank 0 (every rank must call: the shards are gathered)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        full = get_optimizer_state_dict(self.model, self.optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.rank != 0:
            return None
        index = {name: i for i, (name, _) in enumerate(self.model.named_parameters())}
        return {"state": {index[k]: v for k, v in full["state"].items()},
                "param_groups": [{**g, "params": [index[k] for k in g["params"]]} for g in full["param_groups"]]}

    def load_optimizer_state(self, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        names = [name for name, _ in self.model.named_parameters()]
        full = {"state": {names[i]: v for i, v in state["state"].items()},
                "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
        set_optimizer_state_dict(self.model, self.optimizer, full, options=StateDictOptions(full_state_dict=True))

    def schedule_state(self) -> dict:
        return self.schedule.state_dict()

    def load_schedule_state(self, state: dict) -> None:
        self.schedule.load_state_dict(state)
