"""Sampling ahead (rl.max_staleness): the prefetcher's schedule, and the staleness correction's log-probs."""

import threading

import torch

from rlpractice import model as policy
from rlpractice.learner.forward import Sequence
from rlpractice.learner.steps import sequence_logprobs
from rlpractice.learner.update import behaviour_logprobs
from rlpractice.rollout.prefetch import Prefetcher
from rlpractice.tokenizer import train_tokenizer


class Jobs:
    """A batch job that records the step it was started for; each job waits until the test releases it, so
    the test sees exactly which batches have been started, with no timing assumptions."""

    def __init__(self):
        self.started: list[int] = []
        self.lock = threading.Lock()
        self.release: dict[int, threading.Event] = {}
        self.begun = threading.Condition(self.lock)

    def __call__(self, step: int) -> dict:
        with self.lock:
            self.started.append(step)
            gate = self.release.setdefault(step, threading.Event())
            self.begun.notify_all()
        gate.wait(timeout=30)
        return {"batch": step}

    def let_finish(self, step: int) -> None:
        with self.lock:
            self.release.setdefault(step, threading.Event()).set()

    def wait_started(self, step: int) -> None:
        with self.lock:
            assert self.begun.wait_for(lambda: step in self.started, timeout=30)


def test_synchronous_prefetcher_starts_each_batch_when_its_step_asks():
    jobs = Jobs()
    batches = Prefetcher(jobs, first=1, last=3, max_staleness=0)
    try:
        for step in (1, 2):
            jobs.let_finish(step)
            assert batches.get()["batch"] == step
        jobs.let_finish(3)  # step 3's job may run now, but only once get() asks for it
        assert jobs.started == [1, 2]  # get() returned and nothing was started ahead
        assert batches.pool._work_queue.empty() and not batches.pending
    finally:
        batches.close()


def test_one_step_ahead_starts_the_next_batch_while_the_learner_works_and_stops_at_the_last_step():
    jobs = Jobs()
    batches = Prefetcher(jobs, first=4, last=6, max_staleness=1)
    try:
        jobs.let_finish(4)
        assert batches.get()["batch"] == 4
        jobs.wait_started(5)  # step 5's batch is under way while step 4 "learns" (its job has not finished)
        assert jobs.started == [4, 5] and not batches.pending[0].done()
        jobs.let_finish(5)
        assert batches.get()["batch"] == 5
        jobs.wait_started(6)
        jobs.let_finish(6)
        assert batches.get()["batch"] == 6
        assert jobs.started == [4, 5, 6] and not batches.pending  # never beyond the last step
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
