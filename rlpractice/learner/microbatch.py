"""Micro-batches: a step's sequences cut into forwards of bounded padded size, the same number on every rank."""

from __future__ import annotations

import torch
import torch.distributed as dist

from rlpractice.learner.forward import Sequence, prompt_length

MICRO_BATCH_COST = 256  # a micro-batch's fixed work (a forward's launch and per-layer overhead), in padded tokens


def microbatches(lengths: list[int], token_budget: int) -> list[list[int]]:
    """Indices grouped so each micro-batch's padded size (rows x longest) stays within the budget.

    Sorted by length, the sequences fall into runs of one length; a micro-batch takes consecutive runs, padded
    to its longest, and the cut points minimise padded tokens plus MICRO_BATCH_COST per micro-batch: filling each one
    up to the budget would pad short sequences to long ones. A single sequence longer than the budget still gets a
    micro-batch of its own. Memory is bounded by the budget, not by the group size.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    runs: list[list[int]] = []
    for i in order:
        if runs and lengths[runs[-1][0]] == lengths[i]:
            runs[-1].append(i)
        else:
            runs.append([i])
    rows = [max(1, token_budget // max(lengths[run[0]], 1)) for run in runs]  # rows that fit, padded to this run
    best, cut = [0.0] + [float("inf")] * len(runs), [0] * (len(runs) + 1)  # least cost of runs[:b], its last cut
    for b in range(1, len(runs) + 1):
        count = 0
        for a in range(b - 1, -1, -1):
            count += len(runs[a])
            cost = best[a] + count * lengths[runs[b - 1][0]] + MICRO_BATCH_COST * -(-count // rows[b - 1])
            if cost < best[b]:
                best[b], cut[b] = cost, a
    batches: list[list[int]] = []
    b = len(runs)
    while b:
        members = [i for run in runs[cut[b] : b] for i in run]
        batches[:0] = [members[k : k + rows[b - 1]] for k in range(0, len(members), rows[b - 1])]
        b = cut[b]
    return batches


def sequence_batches(seqs: list[Sequence], token_budget: int, share_prompts: bool) -> list[list[int]]:
    """`microbatches` of sequences. With shared prompts the budget counts completion tokens (each micro-batch adds
    one copy of each of its distinct prompts on top)."""
    return microbatches([len(s.ids) - (prompt_length(s) if share_prompts else 0) for s in seqs], token_budget)


def even_out(batches: list[list[int]], device: torch.device) -> list[list[int]]:
    """With several learner ranks (ranks.py) every rank must run as many forwards and backwards as the others, as
    each one gathers the sharded weights from all of them: pad with empty micro-batches (`steps.idle_pass`) up to
    the most any rank has. One process: `batches` as they are."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return batches
    most = torch.tensor([len(batches)], device=device)
    dist.all_reduce(most, op=dist.ReduceOp.MAX)
    return batches + [[] for _ in range(int(most.item()) - len(batches))]
