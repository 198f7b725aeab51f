"""GRPO math against values computed by hand."""

import math

import pytest
import torch

from rlpractice.algorithm.advantages import advantages, group_advantages, rloo_advantages, zero_variance_fraction
from rlpractice.algorithm.losses import aggregate, clipped_surrogate, kl_k1, kl_k3, sequence_level_logp
from rlpractice.evaluation import answer_key, majority_correct, mean_pass_at_k, pass_at_k


def test_group_advantages_one_correct_of_four():
    # mean 0.25, population std sqrt(0.1875) = 0.4330
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), eps=0.0)
    assert adv[0, 0].item() == pytest.approx(0.75 / math.sqrt(0.1875))  # 1.7321
    assert adv[0, 1].item() == pytest.approx(-0.25 / math.sqrt(0.1875))  # -0.5774
    assert adv.sum().item() == pytest.approx(0.0, abs=1e-6)


def test_group_advantages_without_std_is_centred_reward():
    adv = group_advantages(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0]]), scale_by_std=False)
    assert adv.tolist() == [[0.5, 0.5, -0.5, -0.5], [0.375, -0.125, -0.125, -0.125]]


def test_uniform_groups_get_zero_advantage():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    adv = group_advantages(rewards)
    assert adv[:2].abs().max().item() == 0.0
    assert zero_variance_fraction(rewards) == pytest.approx(2 / 3)


def test_group_advantages_rejects_flat_input():
    with pytest.raises(ValueError, match="num_groups, group_size"):
        group_advantages(torch.tensor([1.0, 0.0]))


def test_clipped_surrogate_by_hand():
    # ratios e^0 = 1, e^0.5 = 1.6487, e^-0.5 = 0.6065
    logp = torch.tensor([[0.0, 0.5, -0.5]])
    old = torch.zeros(1, 3)
    # positive advantage 2: min(r*2, clip(r, 0.8, 1.2)*2) -> 2, 2.4 (clipped), 1.2131
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([2.0]), 0.2, 0.2)
    assert loss[0].tolist() == pytest.approx([-2.0, -2.4, -2 * math.exp(-0.5)], rel=1e-5)
    assert clipped[0].tolist() == [False, True, False]
    # negative advantage -1: min(-r, -clip(r)) -> -1, -1.6487, -0.8 (clipped)
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([-1.0]), 0.2, 0.2)
    assert loss[0].tolist() == pytest.approx([1.0, math.exp(0.5), 0.8], rel=1e-5)
    assert clipped[0].tolist() == [False, False, True]


def test_asymmetric_clip_higher():
    loss, _ = clipped_surrogate(torch.tensor([[0.5]]), torch.zeros(1, 1), torch.tensor([1.0]), 0.2, 0.28)
    assert loss.item() == pytest.approx(-1.28)


def test_gradient_of_surrogate_at_ratio_one_is_advantage():
    logp = torch.zeros(1, 2, requires_grad=True)
    loss, _ = clipped_surrogate(logp, logp.detach(), torch.tensor([3.0]), 0.2, 0.2)
    loss.sum().backward()
    assert logp.grad.tolist() == [[-3.0, -3.0]]


def test_aggregation_modes_by_hand():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    # sequence means 2 and 4, over 2 sequences -> 3
    assert aggregate(per_token, mask, "seq_mean_token_mean", 2, 4, 8).item() == pytest.approx(3.0)
    # token mean: 10 / 4 tokens
    assert aggregate(per_token, mask, "token_mean", 2, 4, 8).item() == pytest.approx(2.5)
    # Dr. GRPO: 10 / (max_tokens 8 * 2 sequences)
    assert aggregate(per_token, mask, "seq_mean_token_sum_norm", 2, 4, 8).item() == pytest.approx(0.625)
    # micro-batch shares add up to the whole-batch value
    a = aggregate(per_token[:1], mask[:1], "token_mean", 2, 4, 8)
    b = aggregate(per_token[1:], mask[1:], "token_mean", 2, 4, 8)
    assert (a + b).item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match="loss_aggregation"):
        aggregate(per_token, mask, "nope", 2, 4, 8)


def test_kl_k3_by_hand():
    logp, ref = torch.tensor([0.0, -1.0]), torch.tensor([0.0, -0.5])
    # diff 0 -> 0; diff 0.5 -> e^0.5 - 0.5 - 1 = 0.148721
    assert kl_k3(logp, ref).tolist() == pytest.approx([0.0, math.exp(0.5) - 1.5], rel=1e-5)


def test_pass_at_k_by_hand():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # 1 - C(2,2)/C(4,2) = 1 - 1/6
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)
    assert pass_at_k(4, 3, 2) == 1.0
    assert mean_pass_at_k([0, 4], 4, 1) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_rloo_by_hand():
    adv = rloo_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]))
    # leave-one-out means: correct sample 0/3 -> 1; wrong ones 1/3 -> -1/3; second group +-(1 - 1/3)
    assert adv[0].tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])
    assert adv[1].tolist() == pytest.approx([2 / 3, 2 / 3, -2 / 3, -2 / 3])
    assert advantages(torch.tensor([[1.0, 0.0]]), "rloo", True).tolist() == [[1.0, -1.0]]
    with pytest.raises(ValueError, match="algo.advantage"):
        advantages(torch.tensor([[1.0, 0.0]]), "ppo", True)


def test_gspo_sequence_ratio_by_hand():
    logp = torch.tensor([[0.2, 0.4, 9.0]], requires_grad=True)  # third token is padding
    old = torch.zeros(1, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    seq = sequence_level_logp(logp, old, mask)
    assert seq[0, :2].tolist() == pytest.approx([0.3, 0.3])  # mean log-ratio of the real tokens
    loss, clipped = clipped_surrogate(seq, old, torch.tensor([1.0]), 0.2, 0.2)
    # ratio e^0.3 = 1.3499 > 1.2: the whole sequence is clipped at 1.2
    assert loss[0, :2].tolist() == pytest.approx([-1.2, -1.2])
    assert clipped[0, :2].tolist() == [True, True]
    seq2 = sequence_level_logp(logp, old, mask)
    (torch.exp(seq2 - old)[0, 0]).backward()
    # d/dlogp_t of exp(mean) = exp(0.3) / 2 for real tokens, 0 for padding
    assert logp.grad[0].tolist() == pytest.approx([math.exp(0.3) / 2, math.exp(0.3) / 2, 0.0], rel=1e-5)


def test_kl_k1_by_hand():
    assert kl_k1(torch.tensor([-1.0, -0.5]), torch.tensor([-0.5, -0.5])).tolist() == [-0.5, 0.0]


def test_majority_vote_by_hand():
    assert majority_correct(["7", "5", "7", None], [True, False, True, False])
    assert not majority_correct(["5", "5", "7"], [False, False, True])
    assert majority_correct(["5", "7"], [True, False])  # a tie goes to the answer seen first
    assert not majority_correct([None, None], [False, False])
    keys = [answer_key(t) for t in [" 1 + 1 = 2. Answer: 1/2", "Answer: 0.5", "Answer: 2/4.", "no answer"]]
    assert keys == ["1/2", "1/2", "1/2", None]
