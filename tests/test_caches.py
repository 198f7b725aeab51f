"""Tool caches go to cache_dir, unless the user pointed a tool elsewhere."""

import os

import pytest
from torch._inductor.runtime.cache_dir_utils import cache_dir as inductor_cache_dir

from rlpractice.caches import CACHE_VARIABLES, use_cache_dir


@pytest.fixture(autouse=True)
def no_cache_variables():
    """Unset here, and the whole environment restored afterwards: use_cache_dir and torch write os.environ, which
    later tests' engines inherit (monkeypatch.delenv records nothing for a variable that was not set)."""
    saved = dict(os.environ)
    for name in CACHE_VARIABLES:
        os.environ.pop(name, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_cache_dir_wins_over_torchs_own_default(tmp_path):
    inductor_cache_dir()  # what importing transformers ends up doing: torch writes its /tmp default
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] != str(tmp_path / "torchinductor")
    env = use_cache_dir(tmp_path)
    assert env["TORCHINDUCTOR_CACHE_DIR"] == os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "torchinductor")
    assert env["WANDB_DATA_DIR"] == str(tmp_path / "wandb")


def test_a_users_own_setting_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "my_wandb"))
    env = use_cache_dir(tmp_path / "cache")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")
    assert env["WANDB_DATA_DIR"] == str(tmp_path / "my_wandb")
