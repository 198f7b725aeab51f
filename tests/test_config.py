import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from tests.conftest import ROOT, run_cli

CONF = str(ROOT / "conf")


def test_default_experiment_composes_with_every_group():
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=math"])
    for group in ("model", "textbook", "sampler", "verifier", "algo", "tracker", "cluster"):
        assert group in cfg
    assert cfg.tracker.mode == "offline"
    assert cfg.verifier.name == "math"
    assert cfg.rl.samples_per_prompt >= 32 and cfg.rl.samples_per_prompt * cfg.rl.prompts_per_step >= 1024


def test_any_knob_overridable_and_unknown_key_rejected():
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=math", "rl.samples_per_prompt=1024", "algo.epsilon_high=0.28"])
        assert cfg.rl.samples_per_prompt == 1024 and cfg.algo.epsilon_high == 0.28
        with pytest.raises(ConfigCompositionException, match="stepz"):
            compose("config", overrides=["+experiment=math", "rl.stepz=3"])


def test_cli_unknown_key_gives_a_clear_error():
    result = run_cli(["+experiment=math", "rl.stepz=3"], timeout=120)
    assert result.returncode != 0
    assert "Key 'stepz' is not in struct" in result.stderr
    assert "Traceback" not in result.stderr  # one clear message, not a stack trace
