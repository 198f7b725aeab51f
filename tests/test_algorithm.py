"""GRPO math against values computed by hand."""

import math

import pytest
import torch

from rlpractice.algorithm.advantages import (
    advantages,
    group_advantages,
    passk_advantages,
    rloo_advantages,
    zero_variance_fraction,
)
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


def test_passk_advantages_by_hand():
    # N=4, k=2. c=1: R = 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5, std = sqrt(0.5 * 0.5) = 0.5;
    #   correct (1 - 0.5)/0.5 = 1; wrong: C(2,1)/C(3,1) = 2/3, (0.5 - 2/3)/0.5 = -1/3.
    # c=2: R = 1 - C(2,2)/C(4,2) = 5/6, std = sqrt(5/6 * 1/6) = sqrt(5)/6;
    #   correct (1/6)/(sqrt(5)/6) = 1/sqrt(5) = 0.4472; wrong: C(1,1)/C(3,1) = 1/3, (1/6 - 1/3)/(sqrt(5)/6) = -0.4472.
    # c=3 > N - k: every pair holds a right answer, R = 1 (C(1,2) = 0): all 0. c=0 and c=4: all 0.
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0],
                            [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    adv = passk_advantages(rewards, k=2)
    assert adv[0].tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])
    s5 = 1 / math.sqrt(5)
    assert adv[1].tolist() == pytest.approx([-s5, s5, -s5, s5])
    assert adv[2:].abs().max().item() == 0.0
    assert advantages(rewards[:1], "passk", True, k=2)[0].tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])


def test_passk_advantages_average_zero_and_k1_is_grpo():
    # sum = N(1 - R) - (N - c) C(N-c-1, k-1)/C(N-1, k-1), and N C(N-c, k)/C(N, k) = (N - c) C(N-c-1, k-1)/C(N-1, k-1)
    # (C(n, k) = n/k C(n-1, k-1) twice): so the group mean is 0 for every N, c, k, as with GRPO.
    rewards = (torch.rand(200, 8, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    for k in range(1, 9):
        assert passk_advantages(rewards, k).sum(dim=1).abs().max().item() < 1e-4
    # k=1: R = c/N (the mean), a wrong sample's share C(N-c-1, 0)/C(N-1, 0) = 1: exactly GRPO's (r - mean)/std
    torch.testing.assert_close(passk_advantages(rewards, 1), group_advantages(rewards), atol=1e-5, rtol=1e-5)


def test_passk_advantages_are_the_k_subsets_view():
    # the estimator's meaning, counted out: a sample's unscaled advantage is the mean max-reward of the k-subsets
    # holding it minus the mean over all k-subsets (R); std is that of the subsets' 0/1 max-rewards, sqrt(R(1-R))
    from itertools import combinations

    n = 5
    for c in range(n + 1):
        r = [1.0] * c + [0.0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(combinations(range(n), k))
            big_r = sum(max(r[i] for i in s) for s in subsets) / len(subsets)
            std = math.sqrt(big_r * (1 - big_r))
            want = [0.0 if std == 0 else (sum(max(r[i] for i in s) for s in subsets if j in s)
                                          / sum(1 for s in subsets if j in s) - big_r) / std for j in range(n)]
            assert passk_advantages(torch.tensor([r]), k)[0].tolist() == pytest.approx(want, abs=1e-5), (c, k)


def test_passk_advantages_reject_what_pass_at_k_cannot_count():
    with pytest.raises(ValueError, match="0/1 rewards"):
        passk_advantages(torch.tensor([[1.0, 0.2, 0.0, 0.0]]), k=2)  # a weighted or reward-model score
    with pytest.raises(ValueError, match="passk_k=5"):
        passk_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), k=5)  # k larger than the group


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


def test_truncated_is_weights_by_hand():
    from rlpractice.algorithm.losses import truncated_is_weights

    learner = torch.tensor([[-1.0, -2.0, -0.5]])
    sampler = torch.tensor([[-1.0, -2.5, -3.0]])  # ratios e^0 = 1, e^0.5 = 1.6487, e^2.5 = 12.18
    weights, truncated = truncated_is_weights(learner.requires_grad_(), sampler, cap=2.0)
    assert weights[0].tolist() == pytest.approx([1.0, 1.6487, 2.0], abs=1e-4)
    assert truncated.tolist() == [[False, False, True]] and not weights.requires_grad
