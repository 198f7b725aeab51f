"""The learner as 2 ranks (FSDP2 over gloo, Ray actors) takes the same optimiser step as one process on the same
batch: loss, gradient norm, weights after the step and the optimizer's state. The gradient norm is what would show
the ranks' gradients averaged instead of summed (pytorch issue 162338): Adam's first step hides a gradient's scale."""

import copy

import pytest
import ray
import torch
from omegaconf import OmegaConf

from rlpractice.algorithm.settings import LossSettings
from rlpractice.learner.device import place
from rlpractice.learner.forward import Sequence
from rlpractice.learner.local import LocalLearner
from rlpractice.learner.ranks import LearnerGroup, shares
from rlpractice.model import new_model
from rlpractice.tokenizer import train_tokenizer

LEARNER = OmegaConf.create({"num_workers": 2, "num_cpus_per_worker": 1, "num_gpus_per_worker": 0,
                            "placement": "PACK", "device": "cpu"})
CLUSTER = OmegaConf.create({"address": None, "num_cpus": 2, "object_store_mb": 256, "log_to_driver": True,
                            "temp_dir": None, "placement_timeout_s": 60, "vllm_log_level": "ERROR"})
LOSS = LossSettings(token_budget=48, grad_clip=1e9, eps_low=0.2, eps_high=0.28, aggregation="token_mean",
                    max_tokens=16)


def tiny():
    tok = train_tokenizer(["Question: 12 + 7 = 19. Answer: 19 and so on"] * 30, 300)
    model = new_model(tok, 64, 2, 2, 128, 64, seed=0)
    place(model, "cpu")
    return model, tok


def rl_batch(groups: int, per_group: int) -> list[Sequence]:
    g = torch.Generator().manual_seed(1)
    seqs = []
    for k in range(groups):
        prompt = torch.randint(3, 250, (5 + k,), generator=g).tolist()
        for j in range(per_group):
            n = int(torch.randint(2, 9, (1,), generator=g))
            seqs.append(Sequence(prompt + torch.randint(3, 250, (n,), generator=g).tolist(),
                                 [0] * len(prompt) + [1] * n, advantage=float(j % 3) - 1.0))
    return seqs


def weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_shares_keep_groups_together_and_balance_tokens():
    seqs = rl_batch(5, 4)
    parts = shares(seqs, 2)
    assert sorted(i for p in parts for i in p) == list(range(len(seqs)))
    for p in parts:  # a group's samples are on one rank
        assert len({tuple(seqs[i].ids[:5 + k]) for k in range(5) for i in p}) >= 1
        prompts = {seqs[i].loss_mask.index(1) for i in p}
        assert all(sum(1 for i in p if seqs[i].loss_mask.index(1) == q) % 4 == 0 for q in prompts)
    sizes = [sum(len(seqs[i].ids) for i in p) for p in parts]
    assert max(sizes) - min(sizes) <= max(4 * len(s.ids) for s in seqs)


@pytest.mark.slow
def test_two_ranks_take_the_single_process_step():
    model, tok = tiny()
    one = LocalLearner(copy.deepcopy(model))
    ray.shutdown()
    two = LearnerGroup(copy.deepcopy(model), LEARNER, CLUSTER)
    try:
        for learner in (one, two):
            learner.start(lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99))
        rl = rl_batch(5, 4)  # groups of unequal size over 2 ranks: unequal micro-batch counts
        kw = dict(pad_id=tok.pad_token_id, share_prompts=True)
        old = one.logprobs(rl, token_budget=48, share_prompts=True, pad_id=tok.pad_token_id)
        old2 = two.logprobs(rl, token_budget=48, share_prompts=True, pad_id=tok.pad_token_id)
        for a, b in zip(old, old2, strict=True):
            assert torch.allclose(a, b, atol=1e-5)
        for s, lp in zip(rl, old, strict=True):
            s.old_logps = lp
        results = [learner.policy_gradient_step(rl, LOSS, **kw) for learner in (one, two)]
        a, b = results
        assert a["grad_norm"] > 0
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)  # summed, not averaged, over ranks
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6)
        assert b["entropy"] == pytest.approx(a["entropy"], rel=1e-4)
        assert b["clip_ratio"] == pytest.approx(a["clip_ratio"], abs=1e-6)
        # Adam turns gradients near 0 into steps of about lr (1e-2): tiny float differences show up as ~1e-5
        assert torch.allclose(weights(one.full_model()), weights(two.full_model()), atol=1e-4)

        # a next-token step where one rank has nothing to learn (one sequence for two ranks): it idles along
        lm = [Sequence(list(range(3, 40)), [1] * 37)]
        losses = [learner.lm_step(lm, pad_id=tok.pad_token_id, token_budget=64, grad_clip=1.0) for learner in
                  (one, two)]
        assert losses[1] == pytest.approx(losses[0], rel=1e-4)
        assert torch.allclose(weights(one.full_model()), weights(two.full_model()), atol=2e-4)

        # the optimizer's state comes back laid out as one process's, and loads into one process
        state1, state2 = one.optimizer.state_dict(), two.optimizer.state_dict()
        assert state1["state"].keys() == state2["state"].keys()
        for k in state1["state"]:
            for name in ("exp_avg", "exp_avg_sq"):
                assert torch.allclose(state1["state"][k][name], state2["state"][k][name], atol=1e-6, rtol=1e-3)
        restored = LocalLearner(copy.deepcopy(two.full_model()))
        restored.start(lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99))
        restored.optimizer.load_state_dict(state2)
        two.optimizer.load_state_dict(state1)  # and a single process's state loads into the ranks
        nxt = rl_batch(3, 4)
        m1 = restored.policy_gradient_step(nxt, LOSS, **kw)
        m2 = two.policy_gradient_step(nxt, LOSS, **kw)
        assert m2["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-3)
        assert torch.allclose(weights(restored.full_model()), weights(two.full_model()), atol=2e-4)
    finally:
        two.close()
        ray.shutdown()


@pytest.mark.slow
def test_ranks_on_two_nodes_train_a_step_and_missing_room_is_named():
    """Two virtual Ray nodes (ray.cluster_utils.Cluster), one rank on each (STRICT_SPREAD): they form one gloo group
    across nodes and take the single-process step. Asking for a third rank on two nodes fails in one line that
    names what is missing."""
    from ray.cluster_utils import Cluster

    from rlpractice.errors import UserError

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    attach = OmegaConf.merge(CLUSTER, {"address": cluster.address, "placement_timeout_s": 5})
    try:
        model, tok = tiny()
        one = LocalLearner(copy.deepcopy(model))
        two = LearnerGroup(copy.deepcopy(model), OmegaConf.merge(LEARNER, {"placement": "STRICT_SPREAD"}), attach)
        try:
            assert len(set(two.nodes())) == 2
            seqs = rl_batch(3, 4)
            for learner in (one, two):
                learner.start(lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99))
            a, b = (learner.policy_gradient_step(seqs, LOSS, pad_id=tok.pad_token_id, share_prompts=True)
                    for learner in (one, two))
            assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
            assert torch.allclose(weights(one.full_model()), weights(two.full_model()), atol=1e-4)
        finally:
            two.close()
        with pytest.raises(UserError, match=r"could not place 3 learner ranks of \{'CPU': 1\}.*num_workers"):
            LearnerGroup(model, OmegaConf.merge(LEARNER, {"num_workers": 3, "placement": "STRICT_SPREAD"}), attach)
    finally:
        ray.shutdown()
        cluster.shutdown()
