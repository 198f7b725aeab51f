"""Where the policy learns: in this process (`learner.num_workers=1`), or as N ranks (N > 1): Ray actors in one
placement group, one torch.distributed process group (gloo on CPU, NCCL on CUDA), the policy sharded over them
with FSDP2 (`fully_shard`).

Why FSDP2, not DDP: each rank keeps 1/N of the weights, gradients and AdamW state (DDP keeps all of them on every
rank), so a model too big for one device fits on N; and DDP's gradient hooks expect one forward per backward, while
`learner.share_prompts` runs a group's prompt and its completions as two forwards.

Each step the trainer splits the sequences over the ranks (a group's samples stay together, so its prompt still
runs once), every rank runs the same learner.py step on its share with the *whole batch's* normalisers, and the
ranks' gradients are summed: FSDP2 averages them unless told otherwise (its divide factor is set to 1 here). So the
step equals the single-process step on the whole batch; tests/test_learner_group.py checks it, gradient norm
included, which is what averaging instead of summing would change (pytorch issue 162338).

The trainer keeps a full copy of the policy on its CPU, refreshed from the ranks only when it is needed: the engines
take new weights or a checkpoint is written (`full_model`). Checkpoints hold full, unsharded tensors, so a run saved
with N ranks resumes with any N.
"""

from __future__ import annotations

import socket
from datetime import timedelta

import ray
import torch
from omegaconf import DictConfig
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from transformers import get_cosine_schedule_with_warmup

from rlpractice.errors import UserError
from rlpractice.learner import (
    Sequence,
    lm_step,
    pick_device,
    place,
    policy_gradient_step,
    prompt_length,
    sequence_logprobs,
    target_tokens,
    use_bf16,
    use_cpu_settings,
)


def trainer_device(learner: DictConfig) -> str:
    """Where the trainer keeps the policy: on `learner.device` when it learns in this process, else a full copy
    on the CPU (the ranks hold the working shards)."""
    return learner.device if learner.num_workers == 1 else "cpu"


def learner_bf16(learner: DictConfig) -> bool:
    """`learner.bf16` resolved for the device the learning runs on (the ranks': GPU ones when they are given GPUs)."""
    if learner.num_workers == 1:
        return use_bf16(learner.bf16, pick_device(learner.device))
    on_gpu = learner.device.startswith("cuda") or (learner.device == "auto" and learner.num_gpus_per_worker > 0)
    return use_bf16(learner.bf16, torch.device("cuda" if on_gpu else "cpu"))


def make_learner(model, learner: DictConfig, cluster: DictConfig):
    """The learner `learner.num_workers` asks for, starting from `model`'s weights."""
    if learner.num_workers == 1:
        return LocalLearner(model)
    return LearnerGroup(model, learner, cluster)


class LocalLearner:
    """The policy learning in this process, on `learner.device`."""

    def __init__(self, model, optimizer=None):
        """`optimizer`: one made elsewhere (else `start` makes AdamW)."""
        self.model = model
        self.optimizer, self.schedule = optimizer, None

    def start(self, lr: float, weight_decay: float, betas: tuple[float, float], warmup_steps: int = 0,
              total_steps: int = 0) -> None:
        """A fresh AdamW; with `total_steps`, its learning rate warms up linearly, then decays on a cosine."""
        self.optimizer, self.schedule = adamw(self.model, lr, weight_decay, betas, warmup_steps, total_steps)

    def lm_step(self, seqs: list[Sequence], **kw) -> float:
        return lm_step(self.model, self.optimizer, seqs, **kw)

    def logprobs(self, seqs: list[Sequence], **kw) -> list[torch.Tensor]:
        return sequence_logprobs(self.model, seqs, **kw)

    def policy_gradient_step(self, seqs: list[Sequence], old: list[torch.Tensor] | None, loss, **kw) -> dict:
        return policy_gradient_step(self.model, self.optimizer, seqs, old, loss, **kw)

    def lr(self) -> float:
        return self.schedule.get_last_lr()[0]

    def schedule_step(self) -> None:
        """A step of the learning-rate schedule: the stage's loop calls it once per stage step (an RL step, whatever
        optimizer steps its update takes; a pretrain, SFT or rm step), the one place it is stepped."""
        if self.schedule is not None:
            self.schedule.step()

    def full_model(self):
        """The policy with its current weights, for the engines and for checkpoints."""
        return self.model

    def close(self) -> None:
        pass


def adamw(model, lr: float, weight_decay: float, betas: tuple[float, float], warmup_steps: int, total_steps: int):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas)
    schedule = get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps) if total_steps else None
    return optimizer, schedule


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


class LearnerGroup:
    """N learner ranks (`LearnerRank` actors) with the same methods as `LocalLearner`; each call splits the
    sequences over the ranks and waits for all of them."""

    def __init__(self, model, learner: DictConfig, cluster: DictConfig):
        from rlpractice.rollout.samplers import start_ray  # Ray starts (or attaches) the way the samplers do it

        start_ray(cluster)
        n = learner.num_workers
        bundle = {"CPU": learner.num_cpus_per_worker}
        if learner.num_gpus_per_worker:
            bundle["GPU"] = learner.num_gpus_per_worker
        self.group = placement_group([bundle] * n, strategy=learner.placement)
        if not self.group.wait(timeout_seconds=cluster.placement_timeout_s):
            remove_placement_group(self.group)
            raise UserError(
                f"Ray could not place {n} learner ranks of {bundle} each (strategy {learner.placement}) within "
                f"{cluster.placement_timeout_s}s: the cluster has {ray.cluster_resources()} and the engines hold "
                "their share. Lower learner.num_workers or learner.num_cpus_per_worker/num_gpus_per_worker, or give "
                "Ray more (cluster.num_cpus, or more nodes)")
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
        self.optimizer, self.schedule = RemoteState(self, "optimizer"), None

    def _all(self, method: str, *per_rank_args, **same_kwargs) -> list:
        """Call `method` on every rank at once (they meet in collectives) and wait for all."""
        calls = []
        for i, rank in enumerate(self.ranks):
            args = [a[i] for a in per_rank_args]
            calls.append(getattr(rank, method).remote(*args, **same_kwargs))
        return ray.get(calls)

    def nodes(self) -> list[str]:
        """The Ray node id each rank runs on."""
        return ray.get([r.node.remote() for r in self.ranks])

    def start(self, lr: float, weight_decay: float, betas: tuple[float, float], warmup_steps: int = 0,
              total_steps: int = 0) -> None:
        self._all("start", lr=lr, weight_decay=weight_decay, betas=betas, warmup_steps=warmup_steps,
                  total_steps=total_steps)
        self.schedule = RemoteState(self, "schedule") if total_steps else None

    def lm_step(self, seqs: list[Sequence], **kw) -> float:
        parts = shares(seqs, len(self.ranks))
        self.stale = True
        return sum(self._all("lm_step", [[seqs[i] for i in p] for p in parts], total_targets=target_tokens(seqs),
                             **kw))

    def logprobs(self, seqs: list[Sequence], **kw) -> list[torch.Tensor]:
        parts = shares(seqs, len(self.ranks))
        out: list[torch.Tensor | None] = [None] * len(seqs)
        for part, logps in zip(parts, self._all("logprobs", [[seqs[i] for i in p] for p in parts], **kw),
                               strict=True):
            for i, lp in zip(part, logps, strict=True):
                out[i] = lp
        return out  # type: ignore[return-value]

    def policy_gradient_step(self, seqs: list[Sequence], old: list[torch.Tensor] | None, loss,
                             num_sequences: int | None = None, num_tokens: int | None = None,
                             ref_logps: list[torch.Tensor] | None = None, **kw) -> dict:
        parts = shares(seqs, len(self.ranks))
        pick = lambda values: [None if values is None else [values[i] for i in p] for p in parts]  # noqa: E731
        self.stale = True
        metrics = self._all("policy_gradient_step", [[seqs[i] for i in p] for p in parts], pick(old),
                            pick(ref_logps), loss=loss,
                            num_sequences=len(seqs) if num_sequences is None else num_sequences,
                            num_tokens=target_tokens(seqs) if num_tokens is None else num_tokens, **kw)
        return combine(metrics, [target_tokens([seqs[i] for i in p]) for p in parts])

    def lr(self) -> float:
        return ray.get(self.ranks[0].lr.remote())

    def schedule_step(self) -> None:
        if self.schedule is not None:
            self._all("schedule_step")

    def full_model(self):
        if self.stale:
            self.model.load_state_dict(self._all("model_state")[0])
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


class RemoteState:
    """The ranks' optimizer or LR schedule as checkpoint.py sees one: state_dict / load_state_dict (full tensors,
    laid out as a single process's optimizer), and get_last_lr."""

    def __init__(self, group: LearnerGroup, what: str):
        self.group, self.what = group, what

    def state_dict(self) -> dict:
        return self.group._all("state", what=self.what)[0]

    def load_state_dict(self, state: dict) -> None:
        ref = ray.put(state)
        self.group._all("load_state", [ref] * len(self.group.ranks), what=self.what)

    def get_last_lr(self) -> list[float]:
        return [self.group.lr()]


@ray.remote
class LearnerRank(LocalLearner):
    """One learner rank: a `LocalLearner` whose policy is a shard (FSDP2), with its AdamW state and LR schedule; it
    runs learner.py's steps on the share of each batch the trainer gives it."""

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

    def policy_gradient_step(self, seqs: list[Sequence], old, ref_logps, loss, **kw) -> dict:
        """`ref_logps` comes per rank, beside `old` (LearnerGroup._all hands out positional arguments)."""
        return super().policy_gradient_step(seqs, old, loss, ref_logps=ref_logps, **kw)

    def model_state(self) -> dict | None:
        """The full weights, on rank 0 (every rank must call: the shards are gathered)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return full if self.rank == 0 else None

    def state(self, what: str) -> dict | None:
        """The optimizer's full state as a single process's `optimizer.state_dict()` lays it out (parameters by
        index), or the schedule's state; on rank 0."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        if what == "schedule":
            return self.schedule.state_dict()
        full = get_optimizer_state_dict(self.model, self.optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.rank != 0:
            return None
        index = {name: i for i, (name, _) in enumerate(self.model.named_parameters())}
        return {"state": {index[k]: v for k, v in full["state"].items()},
                "param_groups": [{**g, "params": [index[k] for k in g["params"]]} for g in full["param_groups"]]}

    def load_state(self, state: dict, what: str) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        if what == "schedule":
            self.schedule.load_state_dict(state)
            return
        names = [name for name, _ in self.model.named_parameters()]
        full = {"state": {names[i]: v for i, v in state["state"].items()},
                "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
        set_optimizer_state_dict(self.model, self.optimizer, full, options=StateDictOptions(full_state_dict=True))
