"""Episodes through a real vLLM engine in a Ray actor: check and retry grades each attempt, answers a wrong one with
the verifier's reason (never the gold answer), and the model answers again; observation ids are encoded once and
masked; environments that raise, hang, return garbage or never end cost only their own episodes.

A tiny model learns one episode by heart: a wrong first attempt (' Answer: 8' for 3 + 4), the checker's answer, and
a right second attempt (' Answer: 7'), so at temperature 0 every episode takes exactly that path."""

import pytest
import ray
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlpractice import model as policy
from rlpractice.environments.loop import encode_result
from rlpractice.environments.retry import observation
from rlpractice.environments.settings import episode_settings
from rlpractice.evaluation import evaluate
from rlpractice.grading.pool import GradingPool
from rlpractice.grading.registry import is_failure
from rlpractice.learner.update import sequences
from rlpractice.rollout.samplers import Samplers, sample_groups
from rlpractice.textbook.math_textbook import build_textbook
from rlpractice.textbook.problems import Problem
from rlpractice.tokenizer import train_tokenizer
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

PROBLEM = Problem("What is 3 + 4?", "7")
FIRST, SECOND = " Answer: 8", " Answer: 7"
CHECK = observation("8 != the answer")  # the verifier's '8 != 7', the gold answer taken out

BROKEN_ENVS = '''
import time
from rlpractice.environments.base import Step

class Raises:
    stop_strings, gives_reward = (), True
    def reset(self, problem):
        return None
    def step(self, turn):
        raise ZeroDivisionError("the checker divided by zero")

class Hangs(Raises):
    def step(self, turn):
        time.sleep(30)

class Garbage(Raises):
    def step(self, turn):
        return ("not", "a", "step")

class Endless(Raises):
    def step(self, turn):
        return Step("\\nCheck: again.\\nSolution:", reward=0.0)
'''


def episode_ids(tok) -> tuple[list[int], list[int]]:
    """The episode as the engine loop builds it: prompt, sampled ids, the check's ids encoded on their own."""
    prompt = tok(PROBLEM.prompt)["input_ids"]
    eos = [tok.eos_token_id]
    return prompt, encode_result(tok, FIRST) + eos + encode_result(tok, CHECK) + encode_result(tok, SECOND) + eos


@pytest.fixture(scope="module")
def retry_model(tmp_path_factory):
    """A tiny model that writes the episode above by heart."""
    folder = tmp_path_factory.mktemp("retry") / "ckpt"
    tok = train_tokenizer([PROBLEM.prompt + FIRST + CHECK + SECOND] * 20 + build_textbook(0, 50, 10, 2, 2).exposition,
                          300)
    model = policy.new_model(tok, 64, 2, 2, 128, 128, seed=0)
    prompt, completion = episode_ids(tok)
    ids = torch.tensor([prompt + completion])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    policy.save(model, tok, folder)
    return folder, tok


def config(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["+experiment=math", "sampler.num_samplers=1", "sampler.max_new_tokens=64",
                                             "sampler.engine.dtype=float32", "sampler.engine.enforce_eager=true",
                                             "sampler.temperature=0.0", "model.max_seq_len=128", *overrides])


def test_check_and_retry_and_broken_environments_in_a_real_engine(retry_model, tmp_path):
    folder, tok = retry_model
    cfg = config("+env=retry", "env.discount=0.5")
    samplers = Samplers(str(folder), cfg.sampler, cfg.cluster, seed=0)
    pool = GradingPool.from_config(cfg.verifier)
    try:
        groups, _ = sample_groups(samplers, pool, [PROBLEM], 4, logprobs=True, episodes=episode_settings(cfg))
        [group] = groups
        prompt, completion = episode_ids(tok)
        assert group.prompt_ids == prompt
        for s in group.samples:
            assert s.ids == completion, tok.decode(s.ids)  # token in, token out: the check encoded once
            start = len(encode_result(tok, FIRST)) + 1
            check = len(encode_result(tok, CHECK))
            assert s.observation_mask == [0] * start + [1] * check + [0] * (len(completion) - start - check)
            assert all(lp == 0.0 for lp in s.sampler_logps[start:start + check])  # never sampled
            assert s.turns == 2 and s.turn_rewards == [0.0, 1.0]
            assert s.reward == 0.5 and s.reason == "7 equals 7"  # right at the second attempt, discounted
            assert "7" not in tok.decode(s.ids[start:start + check])
        [seq] = sequences(group)[:1]
        assert seq.loss_mask[len(prompt):] == [1 - m for m in group.samples[0].observation_mask]

        result = evaluate(samplers, pool, [PROBLEM], 4, [1, 2], episode_settings(cfg))
        assert result["first_attempt_pass@1"] == 0.0 and result["independent_pass@2"] == 0.0
        assert result["success_within_2_attempts"] == 1.0 and result["env/recovered"] == 1.0

        plugin = tmp_path / "broken_envs.py"
        plugin.write_text(BROKEN_ENVS)
        expected = {"Raises": "error: ZeroDivisionError: the checker divided by zero",
                    "Hangs": "timeout:", "Garbage": "error:"}
        for name, reason in expected.items():
            broken = config(f"env.name={plugin}:{name}", "env.step_timeout_s=1")
            groups, _ = sample_groups(samplers, pool, [PROBLEM], 2, episodes=episode_settings(broken))
            for s in groups[0].samples:
                assert s.reward == 0.0 and is_failure(s.reason) and s.reason.startswith(reason), s.reason
        endless = config(f"env.name={plugin}:Endless", "env.max_turns=3")
        groups, _ = sample_groups(samplers, pool, [PROBLEM], 2, episodes=episode_settings(endless))
        for s in groups[0].samples:
            assert s.finish == "turns" and s.turns == 3 and s.reward == 0.0, (s.finish, s.turns)
        # a healthy environment still works after the broken ones
        groups, _ = sample_groups(samplers, pool, [PROBLEM], 2, episodes=episode_settings(cfg))
        assert [s.reward for s in groups[0].samples] == [0.5, 0.5]
    finally:
        pool.close()
        samplers.shutdown()
        ray.shutdown()


def test_episode_settings_refuse_an_environment_with_tools():
    from rlpractice.errors import UserError

    with pytest.raises(UserError, match="choose one"):
        episode_settings(config("+env=retry", "+tools=calculator"))
    assert OmegaConf.is_config(config("+env=retry").env)
