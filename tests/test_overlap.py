"""Sampling ahead (rl.max_staleness): the prefetcher's schedule, and the staleness correction's log-probs."""

import threading
import time

import torch

from rlpractice import model as policy
from rlpractice.learner import Sequence, sequence_logprobs
from rlpractice.stages.rl import Prefetcher, behaviour_logprobs
from rlpractice.tokenizer import train_tokenizer


def recording_job(started: list[int]):
    """A batch job that records the step it was started for."""
    lock = threading.Lock()

    def job(step: int) -> dict:
        with lock:
            started.append(step)
        time.sleep(0.05)
        return {"batch": step}

    return job


def test_synchronous_prefetcher_starts_each_batch_when_its_step_asks():
    started: list[int] = []
    batches = Prefetcher(recording_job(started), first=1, last=3, max_staleness=0)
    try:
        assert [batches.get()["batch"] for _ in range(2)] == [1, 2]
        time.sleep(0.1)
        assert started == [1, 2]  # nothing sampled ahead
    finally:
        batches.close()


def test_one_step_ahead_starts_the_next_batch_while_the_learner_works_and_stops_at_the_last_step():
    started: list[int] = []
    batches = Prefetcher(recording_job(started), first=4, last=6, max_staleness=1)
    try:
        assert batches.get()["batch"] == 4
        time.sleep(0.1)  # "learning"
        assert started == [4, 5]  # step 5's batch is already under way
        assert [batches.get()["batch"], batches.get()["batch"]] == [5, 6]
        time.sleep(0.1)
        assert started == [4, 5, 6]  # never beyond the last step
    finally:
        batches.close()


def test_behaviour_logprobs_line_up_with_the_learners_positions():
    tok = train_tokenizer(["Question: 1 + 2?\nSolution: 1 + 2 = 3. Answer: 3"] * 20, 300)
    model = policy.new_model(tok, 64, 2, 2, 128, 64, seed=0)
    prompt = tok("Question: 1 + 2?\nSolution:")["input_ids"]
    completion = tok(" 1 + 2 = 3. Answer: 3")["input_ids"]
    seq = Sequence(prompt + completion, [0] * len(prompt) + [1] * len(completion))
    [mine] = sequence_logprobs(model, [seq], tok.pad_token_id, 4096)
    # what an engine serving the same weights reports: the completion tokens' log-probs
    seq.sampler_logps = mine[len(prompt) - 1 :].tolist()
    [behaviour] = behaviour_logprobs([seq])
    assert behaviour.shape == mine.shape
    assert torch.allclose(behaviour[len(prompt) - 1 :], mine[len(prompt) - 1 :])
    assert torch.all(behaviour[: len(prompt) - 1] == 0)


def test_engines_return_log_probs_only_on_steps_that_use_them():
    from omegaconf import OmegaConf

    from rlpractice.stages.rl import wants_sampler_logprobs

    sync = OmegaConf.create({"max_staleness": 0, "logprob_mismatch_every": 10})
    assert [s for s in range(1, 32) if wants_sampler_logprobs(s, sync)] == [1, 11, 21, 31]
    sync.logprob_mismatch_every = 0
    assert not any(wants_sampler_logprobs(s, sync) for s in range(1, 32))
    ahead = OmegaConf.create({"max_staleness": 1, "logprob_mismatch_every": 0})  # the ratio needs them
    assert all(wants_sampler_logprobs(s, ahead) for s in range(1, 32))
