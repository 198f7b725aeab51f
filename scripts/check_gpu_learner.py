"""Check the learner on a CUDA GPU against the CPU: same model, same batch, one SFT step and one GRPO step.

    .venv/bin/python scripts/check_gpu_learner.py [out.json]

Needs torch with CUDA (no vLLM). Writes the losses on both devices and their relative gaps (bf16 autocast
on the GPU, so small gaps are expected) and exits non-zero if a gap exceeds 5%.
"""

import copy
import json
import sys

import torch
from bench_meta import meta  # scripts/ is on sys.path when a script runs

from rlpractice import model as policy
from rlpractice.algorithm.settings import LossSettings
from rlpractice.learner.forward import Sequence
from rlpractice.learner.steps import lm_step, policy_gradient_step
from rlpractice.textbook.math_textbook import build_textbook
from rlpractice.tokenizer import train_tokenizer


def one_of_each(model, seqs: list[Sequence], pad_id: int, bf16: bool) -> dict:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sft = lm_step(model, opt, seqs, pad_id, token_budget=4096, grad_clip=1.0, bf16=bf16)
    rl = policy_gradient_step(model, opt, seqs,
            LossSettings(token_budget=4096, grad_clip=1.0, eps_low=0.2,
                         eps_high=0.2, aggregation="token_mean", max_tokens=64),
            pad_id=pad_id, bf16=bf16)
    return {"sft_loss": sft, "rl_loss": rl["loss"], "rl_grad_norm": rl["grad_norm"]}


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU visible")
    book = build_textbook(0, 500, 64, 8, 4)
    tok = train_tokenizer(book.exposition, 512)
    cpu_model = policy.new_model(tok, 128, 2, 4, 256, 256, seed=0)
    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    seqs = []
    for i, p in enumerate(book.worked[:32]):
        prompt, solution = tok(p.prompt)["input_ids"], tok(p.solution)["input_ids"] + [tok.eos_token_id]
        seqs.append(Sequence(prompt + solution, [0] * len(prompt) + [1] * len(solution), advantage=(-1) ** i))
    cpu = one_of_each(cpu_model, seqs, tok.pad_token_id, bf16=False)  # the fp32 reference
    gpu = one_of_each(gpu_model, seqs, tok.pad_token_id, bf16=True)  # learner.bf16=auto on CUDA
    gaps = {k: abs(gpu[k] - cpu[k]) / max(abs(cpu[k]), 1e-8) for k in cpu}
    result = {**meta(), "device": torch.cuda.get_device_name(), "cpu": cpu, "cuda_bf16_autocast": gpu,
              "relative_gap": gaps}
    text = json.dumps(result, indent=2)
    print(text)
    if len(sys.argv) > 1:
        open(sys.argv[1], "w").write(text)
    sys.exit(0 if max(gaps.values()) < 0.05 else 1)


if __name__ == "__main__":
    main()
