"""The learner on a CUDA GPU: bf16 autocast, both forward paths, memory bounded by the token budget, and
checkpoints that move between GPU and CPU. Marked `gpu`; without a CUDA device conftest deselects them (CI
is CPU-only). Run on a GPU box with: python -m pytest -m gpu tests/test_gpu.py
"""

import multiprocessing

import pytest
import torch
from torch.multiprocessing.reductions import rebuild_cuda_tensor

from rlpractice import model as policy
from rlpractice.algorithm.settings import LossSettings
from rlpractice.learner.device import place, use_bf16
from rlpractice.learner.forward import Sequence
from rlpractice.learner.steps import lm_step, policy_gradient_step, sequence_logprobs
from rlpractice.rollout.weight_transfer import ipc_payload
from rlpractice.tokenizer import train_tokenizer

pytestmark = pytest.mark.gpu

TEXT = [f"Question: {a} + {b} = ? Answer: {a + b}" for a in range(30) for b in range(30)]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXT, 400)


def _model(tok, device: str = "cpu", layers: int = 2):
    m = policy.new_model(tok, 128, layers, 4, 256, 256, seed=0)
    place(m, device)
    return m


def _groups(tok, prompts: int, per_prompt: int, seed: int = 0) -> list[Sequence]:
    """RL-shaped sequences: `per_prompt` completions of each prompt, advantages of both signs."""
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for p in range(prompts):
        prompt = tok(TEXT[p * 7].split("Answer:")[0])["input_ids"]
        for j in range(per_prompt):
            n = int(torch.randint(4, 40, (1,), generator=g))
            comp = torch.randint(3, len(tok), (n,), generator=g).tolist()
            seqs.append(Sequence(prompt + comp, [0] * len(prompt) + [1] * n, advantage=1.0 if j % 2 else -1.0))
    return seqs


def _pg(model, seqs, tok, budget=4096, share=True, bf16=True, lr=0.0):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return policy_gradient_step(model, opt, seqs,
            LossSettings(token_budget=budget, grad_clip=1e9, eps_low=0.2,
                         eps_high=0.2, aggregation="token_mean", max_tokens=64),
            pad_id=tok.pad_token_id, share_prompts=share, bf16=bf16)


def _grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten().float().cpu() for p in model.parameters() if p.grad is not None])


def test_cuda_defaults_bf16_and_keeps_sdpa_attention(tok):
    m = _model(tok, "cuda")
    assert m.device.type == "cuda"
    assert use_bf16("auto", m.device) and not use_bf16(False, m.device)
    assert m.config._attn_implementation == "sdpa"  # eager is only the CPU's choice


def test_bf16_step_on_cuda_matches_fp32_step_on_cpu(tok):
    """The GPU learner (bf16 autocast, fp32 weights and grads) takes the update the CPU one takes."""
    seqs = _groups(tok, 4, 8)
    cpu, gpu = _model(tok, "cpu"), _model(tok, "cuda")
    out_cpu, out_gpu = _pg(cpu, seqs, tok, bf16=False), _pg(gpu, seqs, tok, bf16=True)
    assert all(p.dtype == torch.float32 for p in gpu.parameters())
    g_cpu, g_gpu = _grad(cpu), _grad(gpu)
    assert torch.nn.functional.cosine_similarity(g_cpu, g_gpu, dim=0) > 0.99
    assert out_gpu["entropy"] == pytest.approx(out_cpu["entropy"], rel=0.02)
    assert out_gpu["grad_norm"] == pytest.approx(out_cpu["grad_norm"], rel=0.05)
    assert not torch.equal(g_cpu, g_gpu)  # really computed in another precision


@pytest.mark.parametrize("bf16", [False, True])
def test_shared_prompt_path_equals_collate_path_on_cuda(tok, bf16):
    seqs = _groups(tok, 3, 6, seed=1)
    a, b = _model(tok, "cuda"), _model(tok, "cuda")
    _pg(a, seqs, tok, share=True, bf16=bf16)
    _pg(b, seqs, tok, share=False, bf16=bf16)
    targets = torch.cat([torch.tensor(s.loss_mask[1:]) == 1 for s in seqs])  # the shared path leaves prompts 0
    lp_a = torch.cat(sequence_logprobs(a, seqs, tok.pad_token_id, 4096, share_prompts=True, bf16=bf16))[targets]
    lp_b = torch.cat(sequence_logprobs(b, seqs, tok.pad_token_id, 4096, share_prompts=False, bf16=bf16))[targets]
    tol = 0.05 if bf16 else 1e-4
    assert (lp_a - lp_b).abs().max() < tol
    assert torch.nn.functional.cosine_similarity(_grad(a), _grad(b), dim=0) > (0.99 if bf16 else 0.99999)


def test_grpo_steps_on_cuda_move_logprobs_the_advantage_way(tok):
    seqs = _groups(tok, 2, 4, seed=2)
    m = _model(tok, "cuda")
    before = sequence_logprobs(m, seqs, tok.pad_token_id, 4096, share_prompts=True, bf16=True)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(5):
        policy_gradient_step(m, opt, seqs,
                LossSettings(token_budget=4096, grad_clip=1.0, eps_low=0.2,
                             eps_high=0.2, aggregation="token_mean", max_tokens=64),
                pad_id=tok.pad_token_id, share_prompts=True, bf16=True)
    after = sequence_logprobs(m, seqs, tok.pad_token_id, 4096, share_prompts=True, bf16=True)
    change = [float((a - b).sum()) for a, b in zip(after, before, strict=True)]
    assert all(c > 0 for c, s in zip(change, seqs, strict=True) if s.advantage > 0)
    assert all(c < 0 for c, s in zip(change, seqs, strict=True) if s.advantage < 0)


def test_pretraining_on_cuda_lowers_the_loss(tok):
    m = _model(tok, "cuda")
    seqs = [Sequence(ids, [1] * len(ids)) for ids in tok(TEXT[:256])["input_ids"]]
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = [lm_step(m, opt, seqs[(i * 32) % 256:][:32], tok.pad_token_id, 4096, 1.0, bf16=True) for i in range(40)]
    assert losses[-1] < 0.5 * losses[0]


def test_peak_memory_follows_the_token_budget_not_the_group_size(tok):
    """4x the samples under the same token budget: more micro-batches, not more activation memory."""
    m = _model(tok, "cuda", layers=4)
    peaks = []
    for per_prompt in (16, 64):
        seqs = _groups(tok, 4, per_prompt, seed=3)
        _pg(m, seqs, tok, budget=1024)  # warm-up: gradients and allocator pools exist before measuring
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _pg(m, seqs, tok, budget=1024)
        peaks.append(torch.cuda.max_memory_allocated() - base)
    assert peaks[1] < 1.3 * peaks[0], peaks


def test_checkpoint_written_from_cuda_loads_on_cpu_with_the_same_weights(tok, tmp_path):
    m = _model(tok, "cuda")
    _pg(m, _groups(tok, 2, 4), tok, lr=1e-2)  # trained weights, not the seed's
    policy.save(m, tok, tmp_path / "ckpt")
    loaded, _ = policy.load(tmp_path / "ckpt")
    for (name, a), (_, b) in zip(m.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a.cpu(), b), name


def open_ipc_payload(requests, replies) -> None:
    """The engine's end of weight_sync=cuda_ipc in a process of its own, done as vLLM 0.32's IPC engine does it
    (ipc_engine.py, receive_weights): find this GPU's handle by UUID, rebuild each tensor on this process's
    device, copy it out. (vLLM itself is not installed on the GPU boxes these tests ran on.)"""
    gpu = str(torch.cuda.get_device_properties(0).uuid)
    for info in iter(requests.get, None):
        weights = {}
        for name, handle in zip(info["names"], info["ipc_handles"], strict=True):
            args = list(handle[gpu])
            args[6] = 0  # the device index in this process
            weights[name] = rebuild_cuda_tensor(*args).clone().cpu()
        replies.put(weights)


def test_cuda_ipc_payload_gives_another_process_the_live_weights(tok):
    m = _model(tok, "cuda")
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    requests, replies = ctx.Queue(), ctx.Queue()
    engine = ctx.Process(target=open_ipc_payload, args=(requests, replies), daemon=True)
    engine.start()
    try:
        for _ in range(2):  # the first sync, then one after an update (no stale copy anywhere)
            info, tensors = ipc_payload(m)
            requests.put(info)
            got = replies.get(timeout=120)
            assert list(got) == list(m.state_dict())
            for name, value in m.state_dict().items():
                assert torch.equal(got[name], value.cpu()), name
            del tensors
            _pg(m, _groups(tok, 2, 4), tok, lr=1e-2)
    finally:
        requests.put(None)
        engine.join(timeout=60)
