"""Bad input gets one clear message that names the key or path, and no run data is touched."""

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from rlpractice import hardware
from rlpractice.config_checks import check
from rlpractice.config_schema import composition_error
from rlpractice.errors import UserError
from tests.conftest import ROOT, run_cli


def compose_and_check(overrides: list[str]):
    """What `python -m rlpractice` does before anything starts: compose (types, keys), resolve the `auto` knobs from
    this machine, then check (values)."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        try:
            cfg = compose("config", overrides=overrides)
        except HydraException as e:
            raise UserError(composition_error(e)) from e
    hardware.resolve(cfg)
    check(cfg)
    return cfg


@pytest.mark.parametrize("override, message", [
    ("rl.steps=abc", "rl.steps='abc': expected an integer"),
    ("rl.samples_per_prompt=0", "rl.samples_per_prompt=0: must be >= 1"),
    ("algo.lr=fast", "algo.lr='fast': expected a number"),
    ("eval.k=[1,99]", "eval.k contains 99"),
    ("textbook.practice=0", "textbook.practice=0: must be >= 1"),  # an empty practice set
    ("textbook.answer_only=1.5", "textbook.answer_only=1.5"),
    ("model.path=/no/such/checkpoint", "model.path=/no/such/checkpoint: not an HF checkpoint"),
    ("rl.samples_per_prompt=1000000000", "needs about"),  # a group far larger than memory allows
    ("sampler.num_samplers=4096",  # more engines than any machine has cores
     "sampler.num_samplers=4096: 4096 engines x sampler.num_cpus_per_sampler=1 need 4096 CPUs"),
    ("learner.share_prompts=maybe", "learner.share_prompts='maybe': expected true or false"),
    ("learner.bf16=sometimes", "learner.bf16='sometimes': expected auto, true or false"),
    ("sampler.weight_sync=cuda_ipc", "sampler.weight_sync=cuda_ipc: the engines read the weights"),
    ("+sampler.engine.enable_sleep_mode=true", "sampler.engine.enable_sleep_mode=true frees the engines' GPU memory"),
    ("sampler.weight_sync=carrier_pigeon",
     "sampler.weight_sync='carrier_pigeon': expected filesystem, object_store or cuda_ipc"),
    ("algo.loss_aggregation=sum", "algo.loss_aggregation='sum': expected seq_mean_token_mean, token_mean or"),
    ("algo.advantage=ppo", "algo.advantage='ppo': expected grpo, rloo or passk"),
    ("algo.ratio_level=group", "algo.ratio_level='group': expected token or sequence"),
    ("algo.kl_estimator=k2", "algo.kl_estimator='k2': expected k1 or k3"),
    ("sampler.top_p=2", "sampler.top_p=2.0: must be between 0.0 and 1.0"),
    ("rl.stepz=3", "rl.stepz: no such key; did you mean rl.steps?"),  # a misspelt key
    ("+algo.epsilon_hi=0.3", "algo.epsilon_hi: no such key; did you mean algo.epsilon_high?"),  # added with +
    ("data.path=train.jsonl", "data.path: no such key"),  # a key of data=jsonl, not of the default data=textbook
    ("model.hidden_size=wide", "model.hidden_size='wide': expected an integer"),
])
def test_bad_values_name_their_key(override, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        compose_and_check(["+experiment=math", override])


def test_default_config_passes_the_checks():
    compose_and_check(["+experiment=math"])


def test_cli_bad_value_is_one_line_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(["+experiment=math", "rl.steps=abc", f"hydra.run.dir={run_dir}"], timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == "error: config key rl.steps='abc': expected an integer"
    assert "Traceback" not in result.stderr
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "wandb").exists()


def test_cli_unknown_weight_sync_is_one_line_before_anything_starts(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(["+experiment=math", "sampler.weight_sync=carrier_pigeon", f"hydra.run.dir={run_dir}"],
                     timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("error: config key sampler.weight_sync='carrier_pigeon': "
                                                      "expected filesystem, object_store or cuda_ipc")
    assert "[data]" not in result.stdout and "[pretrain]" not in result.stdout  # stopped before the first stage
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "wandb").exists()


def test_cli_misspelt_key_is_one_line_naming_it():
    result = run_cli(["+experiment=math", "rl.stepz=3"], timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["error: config key rl.stepz: no such key; did you mean rl.steps?"]


def test_cli_config_error_comes_before_torch_is_loaded():
    """Hydra's errors come before the pipeline's imports (torch, transformers): a typo costs no start-up wait."""
    probe = ("import runpy, sys\nsys.argv = ['rlpractice', '+experiment=math', 'rl.stepz=3']\n"
             "try:\n    runpy.run_module('rlpractice', run_name='__main__')\nexcept SystemExit as e:\n"
             "    print(e.code)\nprint('torch loaded' if 'torch' in sys.modules else 'torch not loaded')\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.splitlines() == ["error: config key rl.stepz: no such key; did you mean rl.steps?",
                                          "torch not loaded"], result.stdout + result.stderr


def test_cli_misspelt_key_in_an_own_config_file_names_the_file_and_the_key(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nalgo:\n  epsilon_hi: 0.3\n")
    result = run_cli([f"hydra.searchpath=[file://{tmp_path}]", "+experiment=mine"], timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: In 'experiment/mine': config key algo.epsilon_hi: no such key; did you mean algo.epsilon_high?"]


def test_cli_missing_model_path(tmp_path):
    result = run_cli(["+experiment=math", "model.path=/no/such/ckpt", f"hydra.run.dir={tmp_path / 'run'}"],
                     timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "model.path=/no/such/ckpt: not an HF checkpoint directory" in result.stderr


def test_cli_run_directory_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    result = run_cli(["+experiment=math", f"hydra.run.dir={blocker / 'run'}"], timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "is a file, not a directory" in result.stderr
    assert blocker.read_text() == "keep me"


def test_cli_corrupt_dataset_line_names_file_and_line_and_writes_nothing(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"question": "What is 1 + 1?", "answer": "#### 2"}\n{"question": "What is 2 + 2?", "answ\n')
    run_dir = tmp_path / "run"
    result = run_cli(["data=jsonl", f"data.path={data}", f"hydra.run.dir={run_dir}"], timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {data}:2: not valid JSON") and "data.skip_bad=true" in last
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "wandb").exists()


def test_cli_empty_dataset(tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("\n")
    result = run_cli(["data=jsonl", f"data.path={data}", f"hydra.run.dir={tmp_path / 'run'}"], timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"data.path='{data}': no usable problems" in result.stderr.strip().splitlines()[-1]


def test_cli_model_hf_without_a_path_says_which_key_to_add(tmp_path):
    result = run_cli(["+experiment=math", "model=hf", f"hydra.run.dir={tmp_path / 'run'}"], timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "config key model.path is required" in result.stderr.strip().splitlines()[-1]


def test_gpu_sampler_config_passes_the_checks_and_takes_sleep_mode_on_synchronous_steps_only():
    gpu = ["+experiment=math", "sampler=vllm_gpu", "sampler.engine.enable_sleep_mode=true"]
    cfg = compose_and_check(gpu)
    assert cfg.sampler.num_gpus_per_sampler == 1 and cfg.sampler.engine.block_size is None  # not the CPU's 32
    with pytest.raises(UserError, match="rl.max_staleness=0"):
        compose_and_check([*gpu, "rl.max_staleness=1"])
