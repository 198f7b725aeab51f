"""The real sampler: a vLLM engine inside a Ray actor serves the learner's new weights after a sync."""

import pytest
import ray
import torch
from hydra import compose, initialize_config_dir

from rlpractice import model as policy
from rlpractice.rollout.samplers import Samplers
from rlpractice.tokenizer import train_tokenizer
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
PROMPT = "Question: Tom has 3 apples and gets 4 more. How many apples does Tom have now?\nSolution:"


def hf_greedy(model, tokenizer, prompt: str, n: int) -> list[int]:
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(ids).logits[0, -1].argmax())
            if nxt == tokenizer.eos_token_id:
                break
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


def test_weight_sync_changes_what_the_engine_serves(tmp_path):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        # float32 engines: greedy decoding is compared with HF's float32 below, and a random model has near-ties
        # that bf16 rounding (which differs between vLLM's compiled and eager forwards) can flip
        cfg = compose("config", overrides=["+experiment=math", "sampler.max_new_tokens=12",
                                           "sampler.max_samples_per_request=8", "sampler.samples_per_call=16",
                                           "sampler.engine.dtype=float32"])
    tok = train_tokenizer([PROMPT + " 3 + 4 = 7. Answer: 7"] * 50, 300)
    model = policy.new_model(tok, 64, 2, 2, 128, 256, seed=0)
    policy.save(model, tok, tmp_path / "ckpt")
    samplers = Samplers(str(tmp_path / "ckpt"), cfg.sampler, cfg.cluster, seed=0)
    try:
        cores = [info.cores for info in samplers.info]  # the default: two engines, a core of their own each
        assert len(cores) == 2 and all(cores) and not set(cores[0]) & set(cores[1])
        assert [info.omp_threads for info in samplers.info] == ["1", "1"]
        assert samplers.info[0].engine_in_process  # the default on CPU: no engine-core process of its own

        def greedy() -> list[int]:
            [(_, chunk)] = list(samplers.sample([PROMPT], 1, temperature=0.0))
            ids = chunk.samples[0].ids
            return [t for t in ids if t != tok.eos_token_id]

        assert greedy() == hf_greedy(model, tok, PROMPT, 12)
        # the prompt fills a KV block, so the engine's prefix cache holds it now: serving blocks the old weights
        # computed after the sync would show below (it did, until load_weights reset that cache)
        assert len(tok(PROMPT)["input_ids"]) >= cfg.sampler.engine.block_size
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.5)
        expected = hf_greedy(model, tok, PROMPT, 12)
        model.save_pretrained(tmp_path / "sync", safe_serialization=True)
        samplers.sync_weights(str(tmp_path / "sync"))
        assert greedy() == expected

        # an engine that dies (here: its actor is killed) is restarted with the *current* weights and the
        # requests it had are retried: the step goes on and serves what it would have served
        ray.kill(samplers.actors[0])
        assert greedy() == expected
        assert samplers.restarts == 1

        # a large group is split into requests and calls, and every sample comes back
        chunks = list(samplers.sample([PROMPT, PROMPT + " "], 40))
        per_prompt = [sum(len(c.samples) for i, c in chunks if i == k) for k in (0, 1)]
        assert per_prompt == [40, 40] and len(chunks) == 10
    finally:
        samplers.shutdown()
