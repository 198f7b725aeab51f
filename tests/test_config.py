"""The configuration as a user meets it: every experiment and group choice composes into the schema and
passes the checks, an override takes effect, and every choice the schema allows is one the code runs."""

import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from ray.util.placement_group import VALID_PLACEMENT_GROUP_STRATEGIES

from rlpractice.algorithm.advantages import ESTIMATORS, advantages
from rlpractice.algorithm.losses import AGGREGATIONS
from rlpractice.algorithm.rft import rft_selection
from rlpractice.algorithm.settings import LossSettings
from rlpractice.config_checks import check
from rlpractice.config_schema import AlgoConfig, Config, FileDataConfig, SamplerConfig, TextbookConfig, choices
from rlpractice.learner.forward import Sequence
from rlpractice.learner.steps import lm_step, policy_gradient_step
from rlpractice.model import new_model
from rlpractice.rollout.weight_sync import MODES
from rlpractice.textbook.dataset import ANSWER_FORMATS
from rlpractice.textbook.sources import BUILTIN_TEXTBOOKS
from rlpractice.tokenizer import train_tokenizer
from tests.conftest import ROOT

CONF = ROOT / "conf"
GROUPS = ["model", "data", "textbook", "sampler", "verifier", "algo", "tracker", "cluster"]


def composed(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_each_experiment_composes_into_the_schema_and_passes_the_checks(experiment):
    cfg = composed(f"+experiment={experiment}")
    check(cfg)
    assert OmegaConf.get_type(cfg) is Config


@pytest.mark.parametrize("group, choice", [(g, c) for g in GROUPS for c in options(g)])
def test_each_group_choice_composes_into_its_schema_and_passes_the_checks(group, choice, tmp_path):
    (tmp_path / "config.json").write_text("{}")  # what check() looks for in an HF checkpoint directory
    required = {"model=hf": [f"model.path={tmp_path}"], "data=jsonl": [f"data.path={tmp_path / 'train.jsonl'}"]}
    cfg = composed("+experiment=math", f"{group}={choice}", *required.get(f"{group}={choice}", []))
    check(cfg)
    kind = OmegaConf.get_type(cfg[group])
    # each section is typed by its schema class, except the verifier's open mapping
    assert kind is dict if group == "verifier" else kind.__module__ == "rlpractice.config_schema"


def test_an_override_beats_the_group_file_and_takes_the_schema_type():
    cfg = composed("+experiment=math", "algo=dapo", "algo.epsilon_high=0.3", "rl.samples_per_prompt=1024",
                   "sampler.temperature=1")
    assert cfg.algo.epsilon_high == 0.3 and cfg.rl.samples_per_prompt == 1024
    assert isinstance(cfg.sampler.temperature, float)  # the schema's float, though "1" reads as an integer


@pytest.mark.parametrize("variant", [a for a in options("algo") if a != "grpo"])
def test_each_algo_file_changes_only_its_own_keys_of_grpo(variant):
    grpo, other = composed("+experiment=math").algo, composed("+experiment=math", f"algo={variant}").algo
    own = set(OmegaConf.load(CONF / "algo" / f"{variant}.yaml")) - {"defaults"}
    assert {k for k in grpo if grpo[k] != other[k]} <= own
    assert own - set(grpo) <= {"rft_keep"}  # a key grpo lacks only where the schema has a class for it


def _tiny():
    tok = train_tokenizer(["Question: 1 + 2 = 3. Answer: 3"] * 20, 300)
    return new_model(tok, 32, 1, 1, 64, 64, seed=0), tok


@pytest.mark.parametrize("algo", options("algo"))
def test_each_algo_choice_gives_an_update_the_learner_takes(algo):
    """From the composed `algo` section to one optimiser step that moves the weights, as the RL stage goes."""
    cfg = composed("+experiment=math", f"algo={algo}")
    model, tok = _tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    completions = [[5, 6, 7], [5, 9], [8, 8, 8, 8], [6, 7]]
    if cfg.algo.name == "rft":
        keep = rft_selection(rewards[0].tolist(), [len(c) for c in completions], cfg.algo.rft_keep)
        seqs = [Sequence([1, 2, *completions[i]], [0, 0] + [1] * len(completions[i])) for i in keep]
        assert math.isfinite(lm_step(model, optimizer, seqs, tok.pad_token_id, cfg.algo.token_budget,
                                     cfg.algo.grad_clip))
    else:
        adv = advantages(rewards, cfg.algo.advantage, cfg.algo.scale_by_std, k=2)[0]  # passk: k within 4 samples
        seqs = [Sequence([1, 2, *c], [0, 0] + [1] * len(c), float(a)) for c, a in zip(completions, adv, strict=True)]
        loss = LossSettings.from_config(cfg.algo, cfg.sampler.max_new_tokens)
        out = policy_gradient_step(model, optimizer, seqs, loss, pad_id=tok.pad_token_id)
        assert math.isfinite(out["loss"]) and out["grad_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_every_choice_the_schema_allows_is_one_the_code_has():
    assert set(choices(SamplerConfig, "weight_sync")) == set(MODES)
    assert set(choices(SamplerConfig, "placement")) <= set(VALID_PLACEMENT_GROUP_STRATEGIES)
    assert set(choices(FileDataConfig, "answer_format")) == set(ANSWER_FORMATS)
    assert set(choices(TextbookConfig, "name")) == set(BUILTIN_TEXTBOOKS)
    assert set(choices(AlgoConfig, "advantage")) == set(ESTIMATORS)
    assert set(choices(AlgoConfig, "loss_aggregation")) == set(AGGREGATIONS)
    model, tok = _tiny()
    seqs = [Sequence([1, 2, 5, 6], [0, 0, 1, 1], 1.0), Sequence([1, 2, 7], [0, 0, 1], -1.0)]
    for level in choices(AlgoConfig, "ratio_level"):  # the learner runs each (with a KL term, each estimator)
        for estimator in choices(AlgoConfig, "kl_estimator"):
            loss = LossSettings(ratio_level=level, kl_coef=0.1, kl_estimator=estimator)
            for s in seqs:
                s.ref_logps = torch.zeros(len(s.ids) - 1)
            out = policy_gradient_step(model, torch.optim.SGD(model.parameters(), lr=0.0), seqs, loss,
                                       pad_id=tok.pad_token_id)
            assert math.isfinite(out["kl"])
