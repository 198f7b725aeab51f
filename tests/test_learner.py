import pytest
import torch

from rlpractice.algorithm.settings import LossSettings
from rlpractice.errors import UserError
from rlpractice.learner.forward import Sequence, collate
from rlpractice.learner.local import LocalLearner
from rlpractice.learner.microbatch import microbatches
from rlpractice.learner.steps import policy_gradient_step
from rlpractice.model import new_model
from rlpractice.tokenizer import train_tokenizer


def test_microbatches_respect_token_budget_and_cover_everything():
    lengths = [5, 50, 7, 30, 30, 2, 100]
    batches = microbatches(lengths, token_budget=64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 64


def test_collate_aligns_targets_with_next_token():
    ids, attn, target = collate([Sequence([1, 2, 3], [0, 1, 1]), Sequence([4, 5], [0, 1])], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 5, 0]]
    assert attn.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert target.tolist() == [[1.0, 1.0], [1.0, 0.0]]


def with_ref(seqs, ref):
    """The reference policy's log-probs on each sequence, for the KL term."""
    for s, r in zip(seqs, ref, strict=True):
        s.ref_logps = r


def _tiny():
    tok = train_tokenizer(["Question: 1 + 2 = 3. Answer: 3"] * 20, 300)
    return new_model(tok, 32, 1, 1, 64, 64, seed=0), tok


def test_micro_batching_does_not_change_the_gradient():
    """Accumulating over token-budget micro-batches gives the gradient of the whole batch."""
    seqs = [Sequence([1, 5, 6, 7, 8], [0, 0, 1, 1, 1], 1.5), Sequence([1, 5, 9], [0, 0, 1], -0.5),
            Sequence([2, 3, 4, 5, 6, 7], [0, 1, 1, 1, 1, 1], 0.7)]
    grads = []
    for budget in (10_000, 5):
        model, tok = _tiny()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        policy_gradient_step(model, opt, seqs,
                LossSettings(token_budget=budget, grad_clip=1e9, eps_low=0.2,
                             eps_high=0.2, aggregation="seq_mean_token_mean", max_tokens=8),
                pad_id=tok.pad_token_id)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert grads[0].abs().sum() > 0


def test_policy_gradient_raises_logprob_of_positive_advantage_sample():
    from rlpractice.learner.steps import sequence_logprobs

    model, tok = _tiny()
    seqs = [Sequence([1, 5, 6, 7], [0, 1, 1, 1], 1.0)]
    before = sequence_logprobs(model, seqs, tok.pad_token_id, 1000)[0][1:].sum()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        policy_gradient_step(model, opt, seqs,
                LossSettings(token_budget=1000, grad_clip=1.0, eps_low=0.2,
                             eps_high=0.2, aggregation="token_mean", max_tokens=4),
                pad_id=tok.pad_token_id)
    after = sequence_logprobs(model, seqs, tok.pad_token_id, 1000)[0][1:].sum()
    assert after > before


def test_head_size_vllm_cannot_serve_is_refused_up_front():
    tok = train_tokenizer(["1 + 1 = 2."] * 20, 280)
    with pytest.raises(UserError, match="model.num_heads=4"):
        new_model(tok, 64, 1, 4, 64, 64, seed=0)


def _group(prompt_ids, samples):
    from rlpractice.grading.registry import Grade
    from rlpractice.rollout.batch import Group, Sample
    from rlpractice.textbook.problems import Problem

    problem = Problem("q", "1", "", 1)
    return Group(problem, prompt_ids, [Sample(ids, "t", "stop", grade=Grade(reward, "r")) for ids, reward in samples])


def test_rft_learns_only_correct_samples_and_shortest_keeps_one_per_problem():
    from omegaconf import OmegaConf

    from rlpractice.learner.update import RejectionSampling

    tok = train_tokenizer(["Question: 1 + 1?\nSolution: 1 + 1 = 2. Answer: 2"] * 20, 280)
    model = new_model(tok, 32, 1, 1, 64, 64, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = lambda n: list(range(3, 3 + n))  # noqa: E731
    groups = [_group([1, 2], [(ids(5), 1.0), (ids(3), 1.0), (ids(4), 0.0)]), _group([1, 2], [(ids(4), 0.0)])]
    algo = OmegaConf.create({"rft_keep": "all", "token_budget": 256, "grad_clip": 1.0})
    rft = RejectionSampling(LocalLearner(model, opt), algo, tok.pad_token_id)
    before = [p.detach().clone() for p in model.parameters()]
    assert rft.update(groups)["learned_sequences"] == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    algo.rft_keep = "shortest"
    assert rft.update(groups)["learned_sequences"] == 1
    assert rft.update([groups[1]]) == {"loss": 0.0, "optimizer_steps": 0, "learned_sequences": 0}


def test_kl_penalty_pulls_toward_the_reference_and_entropy_bonus_raises_entropy():
    from rlpractice.learner.steps import sequence_logprobs

    model, tok = _tiny()
    seqs = [Sequence([1, 5, 6, 7], [0, 1, 1, 1], 0.0), Sequence([2, 8, 9], [0, 1, 1], 0.0)]
    kw = dict(pad_id=tok.pad_token_id)
    loss = dict(token_budget=1000, aggregation="token_mean", max_tokens=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    # reference == policy: k3 KL is 0 and so is its gradient
    ref = sequence_logprobs(model, seqs, tok.pad_token_id, 1000)
    with_ref(seqs, ref)
    out = policy_gradient_step(model, opt, seqs, LossSettings(**loss, kl_coef=1.0), **kw)
    assert out["kl"] == pytest.approx(0.0, abs=1e-6) and out["grad_norm"] == pytest.approx(0.0, abs=1e-6)
    # a reference that puts more mass on these tokens: zero advantages, so only the KL term moves the policy
    with_ref(seqs, [r + 0.5 for r in ref])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = policy_gradient_step(model, opt, seqs, LossSettings(**loss, kl_coef=1.0, kl_estimator="k3"), **kw)["kl"]
    for _ in range(5):
        last = policy_gradient_step(model, opt, seqs, LossSettings(**loss, kl_coef=1.0, kl_estimator="k3"), **kw)["kl"]
    assert first > 0 and last < first
    # entropy bonus alone raises the entropy of the completion tokens
    start = policy_gradient_step(model, opt, seqs, LossSettings(**loss, entropy_coef=1.0), **kw)["entropy"]
    for _ in range(5):
        end = policy_gradient_step(model, opt, seqs, LossSettings(**loss, entropy_coef=1.0), **kw)["entropy"]
    assert end > start


def test_logprob_mismatch_compares_the_same_completion_tokens():
    from rlpractice.learner.steps import sequence_logprobs

    model, tok = _tiny()
    ids, prompt_len = [1, 5, 6, 7, 8], 2
    mine = sequence_logprobs(model, [Sequence(ids, [0, 0, 1, 1, 1])], tok.pad_token_id, 1000)[0]
    completion = mine[prompt_len - 1:].tolist()  # log p of ids[2:], the three completion tokens
    kw = dict(pad_id=tok.pad_token_id)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    exact = policy_gradient_step(model, opt, [Sequence(ids, [0, 0, 1, 1, 1], 1.0, completion)],
            LossSettings(aggregation="token_mean"),
            **kw)
    shifted = [x - 0.1 for x in completion]
    off = policy_gradient_step(model, opt, [Sequence(ids, [0, 0, 1, 1, 1], 1.0, shifted)],
            LossSettings(aggregation="token_mean"),
            **kw)
    assert exact["logprob_mismatch"] == pytest.approx(0.0, abs=1e-5)
    assert off["logprob_mismatch"] == pytest.approx(0.1, abs=1e-5)


def _grads_and_metrics(seqs, loss):
    model, tok = _tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    out = policy_gradient_step(model, opt, seqs, loss, pad_id=tok.pad_token_id)
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]), out


def test_sampler_importance_correction_is_a_no_op_when_engine_and_learner_agree():
    from rlpractice.learner.steps import sequence_logprobs

    model, tok = _tiny()
    ids, mask = [1, 5, 6, 7, 8], [0, 0, 1, 1, 1]
    completion = sequence_logprobs(model, [Sequence(ids, mask)], tok.pad_token_id, 1000)[0][1:].tolist()
    loss = LossSettings(aggregation="token_mean", grad_clip=1e9)
    plain, _ = _grads_and_metrics([Sequence(ids, mask, 1.0, completion)], loss)
    corrected, out = _grads_and_metrics([Sequence(ids, mask, 1.0, completion)],
                                        LossSettings(aggregation="token_mean", grad_clip=1e9, sampler_is_cap=2.0))
    assert out["logprob_mismatch"] == pytest.approx(0.0, abs=1e-5)
    assert out["sampler_is/ratio_mean"] == pytest.approx(1.0, abs=1e-5) and out["sampler_is/truncated_frac"] == 0
    assert torch.allclose(plain, corrected, atol=1e-7)


def test_sampler_importance_correction_weights_each_token_by_its_truncated_ratio():
    """Engine log-probs lower than the learner's by 0.5 on every token: each token's loss is weighted by
    min(e^0.5, cap); with cap 2.0 that is 1.6487, with cap 1.2 it is 1.2 (all truncated). The policy-gradient term is
    linear in the weight when every token has the same one, so the gradient scales by it exactly."""
    from rlpractice.learner.steps import sequence_logprobs

    model, tok = _tiny()
    ids, mask = [1, 5, 6, 7, 8], [0, 0, 1, 1, 1]
    completion = sequence_logprobs(model, [Sequence(ids, mask)], tok.pad_token_id, 1000)[0][1:].tolist()
    lower = [x - 0.5 for x in completion]
    plain, _ = _grads_and_metrics([Sequence(ids, mask, 1.0, lower)], LossSettings(aggregation="token_mean",
                                                                                  grad_clip=1e9))
    for cap, weight, truncated in [(2.0, 1.6487, 0.0), (1.2, 1.2, 1.0)]:
        grads, out = _grads_and_metrics([Sequence(ids, mask, 1.0, lower)],
                                        LossSettings(aggregation="token_mean", grad_clip=1e9, sampler_is_cap=cap))
        assert out["logprob_mismatch"] == pytest.approx(0.5, abs=1e-5)
        assert out["sampler_is/ratio_mean"] == pytest.approx(weight, abs=1e-4)
        assert out["sampler_is/truncated_frac"] == truncated
        assert torch.allclose(grads, weight * plain, rtol=1e-3, atol=1e-7)


def _algo(**overrides):
    from omegaconf import OmegaConf

    return OmegaConf.create({"minibatches": 1, "num_iterations": 1, "advantage": "grpo", "scale_by_std": True,
                             **overrides})


def test_several_passes_and_minibatches_use_the_sampling_policy_ratio():
    """num_iterations x minibatches optimiser steps; after the first, the ratio moves away from 1 and
    the clip starts to act (a large learning rate makes it certain)."""
    from rlpractice.learner.update import PolicyGradient

    model, tok = _tiny()
    groups = [_group([1, 2], [([5, 6, 7], 1.0), ([8, 9], 0.0)]), _group([1, 3], [([6, 6], 0.0), ([7, 5, 9], 1.0)])]
    adv = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    opt = torch.optim.SGD(model.parameters(), lr=50.0)
    update = PolicyGradient(LocalLearner(model, opt), _algo(minibatches=2, num_iterations=2),
                            LossSettings(token_budget=256, grad_clip=1e9, max_tokens=4), tok.pad_token_id)
    out = update.update(groups, adv)
    assert out["optimizer_steps"] == 4 and out["learned_sequences"] == 4
    assert out["clip_ratio"] > 0  # second-pass ratios are off 1 after such large steps


@pytest.mark.parametrize("aggregation", ["seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm"])
@pytest.mark.parametrize("minibatches", [1, 2])
def test_skipping_zero_advantage_samples_changes_speed_not_the_update(aggregation, minibatches):
    """Zero-advantage samples are left out of the learner's forward passes; the loss normalisers still count
    them (tokens and sequences of the whole slice), so the weights after the step are the same."""
    from rlpractice.learner.update import PolicyGradient

    groups = [_group([1, 2], [([5, 6, 7, 8, 9], 1.0), ([8, 9], 0.0), ([4, 4, 4], 0.0)]),
              _group([1, 3], [([6, 6, 6, 6], 1.0), ([7, 5, 9], 1.0), ([5], 1.0)]),  # all equal: advantage 0
              _group([2, 3], [([9, 9], 0.0), ([7, 7, 7, 7, 7, 7], 1.0), ([6], 0.0)])]
    adv = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-0.5, 1.0, 0.0]])
    weights, learned = [], []
    for skip in (False, True):
        model, tok = _tiny()
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        update = PolicyGradient(LocalLearner(model, opt), _algo(minibatches=minibatches),
                                LossSettings(aggregation=aggregation, grad_clip=1e9, max_tokens=8), tok.pad_token_id)
        update.skip_zero_advantage = skip
        learned.append(update.update(groups, adv)["learned_sequences"])
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert learned == [9, 4]
    assert torch.allclose(weights[0], weights[1], atol=1e-6)


def _groups_of_samples():
    """Three prompts of different lengths, each continued by samples of different lengths."""
    g = torch.Generator().manual_seed(0)
    seqs = []
    for prompt_len, lengths in ((3, (1, 4, 2)), (6, (5, 1)), (2, (3, 3, 6, 2))):
        prompt = torch.randint(3, 250, (prompt_len,), generator=g).tolist()
        for n in lengths:
            completion = torch.randint(3, 250, (n,), generator=g).tolist()
            advantage = float(torch.randn((), generator=g))
            seqs.append(Sequence(prompt + completion, [0] * prompt_len + [1] * n, advantage, [-1.0] * n))
    return seqs


def test_shared_prompt_forward_gives_the_same_logprobs_and_entropy_as_the_full_forward():
    from rlpractice.learner.forward import shared_prompt_logprobs, token_logprobs

    model, tok = _tiny()
    seqs = _groups_of_samples()
    ids, attn, target = collate(seqs, tok.pad_token_id)
    full_lp, full_ent = token_logprobs(model, ids, attn, with_entropy=True)
    lp, ent = shared_prompt_logprobs(model, seqs, tok.pad_token_id, "cpu", with_entropy=True)
    assert lp.shape == full_lp.shape == target.shape
    assert torch.allclose(lp * target, full_lp * target, atol=1e-5)
    assert torch.allclose(ent * target, full_ent * target, atol=1e-5)
    assert (lp * (1 - target)).abs().sum() == 0  # nothing but completion tokens is filled in
    assert (full_lp * target).abs().sum() > 0


@pytest.mark.parametrize("budget", [10_000, 6])
def test_shared_prompt_policy_step_gives_the_same_gradient_and_metrics(budget):
    """The whole clipped-surrogate step (with KL and entropy terms) by both paths; a small budget splits
    groups across micro-batches, so a prompt is recomputed in each one and still gives the same gradient."""
    from rlpractice.learner.steps import sequence_logprobs

    seqs = _groups_of_samples()
    out, grads = [], []
    for share in (False, True):
        model, tok = _tiny()
        with_ref(seqs, sequence_logprobs(model, seqs, tok.pad_token_id, budget, share_prompts=share))
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        out.append(policy_gradient_step(model, opt, seqs,
                LossSettings(token_budget=budget, grad_clip=1e9, eps_low=0.2,
                             eps_high=0.2, aggregation="token_mean", max_tokens=8, kl_coef=0.1, entropy_coef=0.01),
                pad_id=tok.pad_token_id, share_prompts=share))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)
    for key in ("loss", "entropy", "kl", "logprob_mismatch", "grad_norm"):
        assert out[0][key] == pytest.approx(out[1][key], rel=1e-4, abs=1e-6), key


def test_shared_prompt_forward_refuses_a_sequence_without_a_prompt():
    from rlpractice.learner.forward import shared_prompt_logprobs

    model, tok = _tiny()
    with pytest.raises(ValueError, match="no prompt"):
        shared_prompt_logprobs(model, [Sequence([4, 5, 6], [1, 1, 1])], tok.pad_token_id, "cpu")


def test_eager_attention_on_cpu_gives_the_same_logprobs_as_sdpa():
    """`place` switches a CPU policy to eager attention (faster under bf16): the same function in fp32,
    on both paths (the shared-prompt one attends to a KV cache with a mask)."""
    from rlpractice.learner.device import place
    from rlpractice.learner.steps import sequence_logprobs

    seqs = _groups_of_samples()
    model, tok = _tiny()
    sdpa = [sequence_logprobs(model, seqs, tok.pad_token_id, 10_000, share_prompts=s) for s in (False, True)]
    place(model, "cpu")
    assert model.config._attn_implementation == "eager"
    eager = [sequence_logprobs(model, seqs, tok.pad_token_id, 10_000, share_prompts=s) for s in (False, True)]
    for a, b in zip(sdpa, eager, strict=True):
        assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a, b, strict=True))


def test_bf16_autocast_step_stays_close_to_fp32_and_keeps_fp32_weights():
    from rlpractice.learner.device import place

    seqs = _groups_of_samples()
    out, grads = [], []
    for bf16 in (False, True):
        model, tok = _tiny()
        place(model, "cpu")
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        out.append(policy_gradient_step(model, opt, seqs,
                LossSettings(token_budget=10_000, grad_clip=1e9, eps_low=0.2,
                             eps_high=0.2, aggregation="token_mean", max_tokens=8, entropy_coef=0.01),
                pad_id=tok.pad_token_id, share_prompts=True, bf16=bf16))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)
    assert out[1]["entropy"] == pytest.approx(out[0]["entropy"], rel=0.02)
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    assert cosine > 0.99 and not torch.equal(grads[0], grads[1])  # bf16 really ran, and points the same way


def test_bf16_setting():
    from rlpractice.learner.device import use_bf16

    cpu = torch.device("cpu")
    assert use_bf16("auto", cpu) is False  # a CPU learner stays fp32 unless asked
    assert use_bf16("auto", torch.device("cuda")) is True
    assert use_bf16(True, cpu) is True and use_bf16(False, torch.device("cuda")) is False


def test_out_of_gpu_memory_in_a_step_names_the_token_budget(monkeypatch):
    """A CUDA out-of-memory error (raised here by hand: no GPU in CI) becomes one line naming the knobs."""
    from rlpractice.learner.steps import lm_step

    model, tok = _tiny()

    def too_big(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.26 GiB")

    monkeypatch.setattr(model, "forward", too_big)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with pytest.raises(UserError, match="out of GPU memory in lm_step: lower the padded tokens per micro-batch"):
        lm_step(model, opt, [Sequence([1, 5, 6], [1, 1, 1])], tok.pad_token_id, 1000, 1.0)


def _pg_step(seqs, budget: int, share: bool):
    """Gradient and metrics of one clipped-surrogate step (with KL and entropy terms) from a fresh tiny model."""
    from rlpractice.learner.steps import sequence_logprobs

    model, tok = _tiny()
    with_ref(seqs, sequence_logprobs(model, seqs, tok.pad_token_id, budget, share_prompts=share))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    out = policy_gradient_step(model, opt, seqs,
            LossSettings(token_budget=budget, grad_clip=1e9, eps_low=0.2, eps_high=0.2, aggregation="token_mean",
                         max_tokens=8, kl_coef=0.1, entropy_coef=0.01),
            pad_id=tok.pad_token_id, share_prompts=share)
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]), out


def test_prompts_run_once_per_step_give_the_gradient_of_prompts_run_per_micro_batch(monkeypatch):
    """A budget of 20 splits the samples into several micro-batches while the three prompts (18 padded tokens)
    fit one: the step runs them once and takes their gradient after the last micro-batch."""
    from rlpractice.learner import steps
    from rlpractice.learner.forward import PromptKV
    from rlpractice.learner.microbatch import sequence_batches

    seqs = _groups_of_samples()
    assert len(sequence_batches(seqs, 20, True)) > 1
    runs = []
    real = steps.step_prompts
    monkeypatch.setattr(steps, "step_prompts", lambda *a, **k: runs.append(real(*a, **k)) or runs[-1])
    once = _pg_step(seqs, 20, share=True)
    assert runs and all(isinstance(r, PromptKV) for r in runs)  # the ref log-probs and the step
    monkeypatch.setattr(steps, "step_prompts", lambda *a, **k: None)
    per_micro_batch = _pg_step(seqs, 20, share=True)
    collated = _pg_step(seqs, 20, share=False)
    assert once[0].abs().sum() > 0
    for other in (per_micro_batch, collated):
        assert torch.allclose(once[0], other[0], atol=1e-6, rtol=1e-4)
        for key in ("loss", "entropy", "kl", "grad_norm"):
            assert once[1][key] == pytest.approx(other[1][key], rel=1e-4, abs=1e-6), key


def test_onednn_linear_layers_give_the_gradient_of_torch_linear(monkeypatch):
    """On a CPU in fp32 the learner's linear layers run through oneDNN: the same gradient within fp32 rounding."""
    from rlpractice.learner import device
    from rlpractice.learner.onednn import OneDNNLinear, onednn_available

    if not onednn_available():
        pytest.skip("this torch has no oneDNN")
    seqs = _groups_of_samples()
    calls = []
    real = OneDNNLinear.apply
    monkeypatch.setattr(OneDNNLinear, "apply", lambda *a: calls.append(1) or real(*a))
    onednn = _pg_step(seqs, 20, share=True)
    assert calls  # the oneDNN path really ran
    monkeypatch.setattr(device, "_cpu_linear", "aten")  # learner.cpu_linear=aten
    before = len(calls)
    plain = _pg_step(seqs, 20, share=True)
    assert len(calls) == before  # aten's linear layers ran instead
    assert torch.allclose(onednn[0], plain[0], atol=1e-5, rtol=1e-4)
    assert onednn[1]["loss"] == pytest.approx(plain[1]["loss"], rel=1e-4, abs=1e-6)


def test_microbatches_pad_less_than_filling_each_up_to_the_budget():
    lengths = list(range(4, 57)) * 8  # as the default run's completions
    batches = microbatches(lengths, token_budget=2048)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 2048 for b in batches)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    greedy, rows, width = 0, 0, 0  # sorted, each micro-batch filled up to the budget
    for n in sorted(lengths):
        if rows and (rows + 1) * n > 2048:
            greedy, rows = greedy + rows * width, 0
        rows, width = rows + 1, n
    greedy += rows * width
    assert padded < greedy
