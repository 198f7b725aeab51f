"""Bring your own: an HF checkpoint on disk (model=hf) and a GSM8K-style dataset (data=jsonl), end to end
through the real command line (Ray + vLLM + W&B offline). A tiny random model scores ~0: these tests check
the pipeline and the grading, not the score."""

import json
from pathlib import Path

import pytest
from transformers import Qwen2Config, Qwen2ForCausalLM

from rlpractice.textbook.math_textbook import build_textbook
from rlpractice.tokenizer import train_tokenizer
from rlpractice.tracking import read_metrics
from tests.conftest import run_cli

pytestmark = pytest.mark.slow
GSM8K = Path(__file__).parent / "data" / "gsm8k_test_first500.jsonl"
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
SMALL_RUN = ["rl.steps=1", "rl.prompts_per_step=2", "rl.samples_per_prompt=8", "rl.eval_every=0",
             "eval.samples_per_problem=2", "eval.k=[1,2]", "sampler.max_new_tokens=16", "sft.steps=3",
             "sft.batch_size=4"]


def make_hf_checkpoint(folder: Path) -> Path:
    """A small random Qwen2 (grouped-query attention, tied embeddings as in Qwen2.5-0.5B) with a chat
    template, written by save_pretrained: what a user's downloaded checkpoint looks like on disk."""
    book = build_textbook(0, 200, 50, 10, 4)
    tokenizer = train_tokenizer(book.exposition, 512)
    tokenizer.chat_template = CHAT_TEMPLATE
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.pad_token = None  # like many released checkpoints: rlpractice must cope
    tokenizer.save_pretrained(folder)
    return folder


def test_rl_on_your_own_hf_checkpoint(tmp_path):
    ckpt = make_hf_checkpoint(tmp_path / "my_model")
    run_dir = tmp_path / "run"
    result = run_cli(["+experiment=math", "model=hf", f"model.path={ckpt}", "model.max_seq_len=256",
                      "textbook.worked=50", "textbook.practice=16", "textbook.heldout=4", *SMALL_RUN,
                      # two steps, the first one moving the weights a lot (an entropy bonus acts even when
                      # every reward is 0), so step 2 shows whether the engines got the new weights
                      "rl.steps=2", "rl.logprob_mismatch_every=1",
                      "sampler.engine.dtype=float32",  # the learner's: the mismatch below is then ~0
                      "algo.sampler_is=true",  # and the importance correction a no-op
                      "algo.entropy_coef=0.01", "algo.lr=0.01",
                      f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"[model] loaded {ckpt}" in result.stdout and "[pretrain]" not in result.stdout
    rollouts = [json.loads(line) for line in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    assert rollouts and all(r["prompt"].startswith("<|user|>") for r in rollouts)  # the checkpoint's template
    steps = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["stage"] == "rl"]
    assert [s["samples"] for s in steps] == [16, 16] and steps[0]["grad_norm"] > 0
    assert steps[1]["logprob_mismatch"] < 1e-3  # the engines serve the updated weights (tied embeddings too)
    for s in steps:  # engines in the learner's precision: every importance weight ~1, none truncated
        assert s["sampler_is/ratio_mean"] == pytest.approx(1.0, abs=2e-3) and s["sampler_is/truncated_frac"] == 0
    config = (run_dir / "config.yaml").read_text()  # the configuration as run: `auto` resolved from the machine
    assert "num_samplers: auto" not in config and "num_cpus: auto" not in config and "dtype: float32" in config
    assert (run_dir / "checkpoints" / "rl" / "config.json").is_file()


def test_rl_on_the_gsm8k_sample_through_data_jsonl(tmp_path):
    """From scratch on GSM8K text: tokenizer + pretrain on the training records' solutions, SFT on them,
    RL graded on the '#### n' answers, held-out records set aside."""
    run_dir = tmp_path / "run"
    result = run_cli(["data=jsonl", f"data.path={GSM8K}", "data.heldout_size=4", "pretrain.steps=3",
                      "pretrain.batch_size=4", "model.hidden_size=64", "model.num_heads=2", "model.num_layers=1",
                      "model.intermediate_size=128", "model.max_seq_len=512", *SMALL_RUN,
                      f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[data] 496 exposition texts, 496 worked, 496 practice, 4 held-out problems" in result.stdout
    rollouts = [json.loads(line) for line in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    gsm8k_answers = {json.loads(line)["answer"].rsplit("#### ", 1)[1] for line in GSM8K.read_text().splitlines()}
    assert rollouts and all(r["answer"] in gsm8k_answers and r["reason"] for r in rollouts)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["heldout_problems"] == 4 and summary["rl_steps"] == 1


def test_continuing_from_this_projects_sft_checkpoint_needs_no_extra_settings(tmp_path, tiny_args):
    """model=hf on a checkpoint rlpractice wrote: the sequence length comes from the checkpoint; a longer explicit
    one, or an engine that cannot start, is one line before or at engine start, with no traceback."""
    first = tmp_path / "first"
    result = run_cli([*tiny_args, "rl.steps=0", f"hydra.run.dir={first}"])
    assert result.returncode == 0, result.stderr[-3000:]
    sft = first / "checkpoints" / "sft"
    small = [a for a in tiny_args if not a.startswith(("model.", "pretrain.", "sft."))]
    continued = [*small, "model=hf", f"model.path={sft}", "sft.steps=0", "rl.steps=1", "rl.eval_every=0"]

    result = run_cli([*continued, f"hydra.run.dir={tmp_path / 'second'}"])
    assert result.returncode == 0, result.stderr[-3000:]

    result = run_cli([*continued, "model.max_seq_len=1024", f"hydra.run.dir={tmp_path / 'third'}"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: config key model.max_seq_len=1024") and "max_position_embeddings=256" in last

    result = run_cli([*continued, "sampler.engine.gpu_memory_utilization=0.00001",
                      f"hydra.run.dir={tmp_path / 'fourth'}"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: a vLLM engine could not start: ") and "kv cache" in last
    assert (tmp_path / "fourth" / "logs" / "engine_start_error.log").read_text()  # the whole story is kept
    assert "socket.send()" not in result.stderr
