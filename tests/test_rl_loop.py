"""The RL loop over a whole run on a tiny policy with real engines and graders (small: one eager engine, short
completions): what a run promises that no single update shows."""

import pytest
from hydra import compose, initialize_config_dir

from rlpractice import model as policy
from rlpractice.grading.pool import GradingPool
from rlpractice.learner.device import place
from rlpractice.stages import rl
from rlpractice.textbook.problems import Problem, Textbook
from rlpractice.tokenizer import train_tokenizer
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


class Rows:
    """A tracker that keeps what is logged."""

    def __init__(self):
        self.rows = []

    def log(self, stage, step, metrics):
        self.rows.append({"stage": stage, "step": step, **metrics})

    def logged(self, stage, step):
        return None

    def log_table(self, stage, step, name, rows):
        self.rows.append({"stage": f"{stage}/{name}", "step": step, "rows": rows})


def config(*overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["+experiment=math", "learner.device=cpu", "rl.prompts_per_step=2",
                                            "rl.samples_per_prompt=4", "rl.eval_every=0", "rl.checkpoint_every=0",
                                            "algo.sampler_is=false", "sampler.num_samplers=1",
                                            "sampler.max_new_tokens=8", "sampler.engine.enforce_eager=true",
                                            "eval.samples_per_problem=4", "eval.k=[1]", *overrides])


@pytest.fixture(scope="module")
def tiny():
    tok = train_tokenizer(["Question: what is 1 + 1?\nAnswer: 2. 0 1 2"] * 20, 300)
    return tok, [Problem(f"what is {i} + 1?", str((i + 1) % 3))
                 for i in range(6)]


def run(cfg, tiny, tmp_path, everything: bool = False) -> list[dict]:
    """The RL stage as the pipeline runs it, from a tiny random policy; the RL rows it logged (`everything`: all
    rows)."""
    tok, problems = tiny
    model = policy.new_model(tok, 64, 1, 2, 128, 256, seed=0)
    policy.save(model, tok, tmp_path / "checkpoints" / "sft")  # what the engines start from
    place(model, "cpu")
    tracker = Rows()
    book = Textbook([], [], problems, problems[:2])
    with GradingPool.from_config(cfg.verifier) as pool:
        results = rl.run_rl(cfg, model, tok, book, pool, tracker, tmp_path)
    assert results.steps == cfg.rl.steps
    assert [r["step"] for r in tracker.rows if r["stage"] == "eval"] == [0, cfg.rl.steps]
    return tracker.rows if everything else [r for r in tracker.rows if r["stage"] == "rl"]


@pytest.mark.parametrize("algo", ["rft", "grpo"])
def test_a_cosine_schedule_decays_to_zero_over_the_run_and_never_climbs_back(algo, tiny, tmp_path):
    """One LR step per RL step, whatever the update does inside it (RFT's is a next-token step)."""
    steps = 8
    rows = run(config(f"algo={algo}", "algo.lr_schedule=cosine", f"rl.steps={steps}"), tiny, tmp_path)
    lrs = [r["lr"] for r in rows]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    assert all(a > b for a, b in zip(lrs[:-1], lrs[1:], strict=True)), lrs
    assert lrs[0] < config().algo.lr and lrs[-1] == pytest.approx(0.0, abs=1e-12)


# TRL's GRPOTrainer names for what rlpractice logs too (rlpractice's own names for two of them: `lr` for its
# learning_rate and `clip_ratio` for clip_ratio/region_mean)
TRL_NAMES = ["reward", "reward_std", "frac_reward_zero_std", "completions/mean_length", "completions/min_length",
             "completions/max_length", "completions/clipped_ratio", "loss", "grad_norm", "entropy", "kl"]


def test_a_step_logs_trl_metric_names_and_a_table_of_its_completions(tiny, tmp_path):
    rows = run(config("rl.steps=2", "algo.kl_coef=0.01", "rl.rollouts_logged_per_step=2"), tiny, tmp_path,
               everything=True)
    steps = [r for r in rows if r["stage"] == "rl"]
    for name in TRL_NAMES:
        assert all(name in r for r in steps), name
    assert steps[0]["completions/min_length"] <= steps[0]["completions/mean_length"] <= \
        steps[0]["completions/max_length"]
    tables = [r for r in rows if r["stage"] == "rl/completions"]
    assert [t["step"] for t in tables] == [1, 2] and all(len(t["rows"]) == 2 for t in tables)
    assert {"prompt", "completion", "reward", "reason"} <= set(tables[0]["rows"][0])
    assert (tmp_path / "rollouts.jsonl").read_text().count("\n") == 4  # the same rows, beside them


def test_maj_at_n_votes_on_the_verifiers_own_reading_of_the_answer():
    """A verifier that says how it reads a final answer (@verifier(..., answer=fn)): maj@n votes on that reading
    (evaluation.py: `pool.answer or answer_key`), not on the math extraction's."""
    from rlpractice.evaluation import answer_key, majority_correct
    from rlpractice.grading.registry import get_verifier, verifier

    last_word = lambda text: text.split()[-1]  # noqa: E731 - a verifier's own answer format

    @verifier("last_word_in_test", answer=last_word)
    def last_word_in_test(completion: str, answer: str, **_) -> float:
        return float(last_word(completion) == answer)

    assert get_verifier("last_word_in_test").answer is last_word
    texts = ["Answer: 3 so eight", "Answer: 3 so nine", "Answer: 5 so seven", "Answer: 4 so seven"]
    correct = [last_word_in_test(t, "seven") == 1.0 for t in texts]
    assert majority_correct([last_word(t) for t in texts], correct)  # "seven" wins its own vote
    assert not majority_correct([answer_key(t) for t in texts], correct)  # the math reading votes 3: both wrong
