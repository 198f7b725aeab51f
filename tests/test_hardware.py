"""The `auto` settings, chosen from a forced machine: the same answers on any CPU these tests run on."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlpractice import hardware
from rlpractice.config_checks import check
from rlpractice.errors import UserError
from tests.conftest import ROOT

ZEN3 = frozenset({"avx", "avx2", "fma"})  # AVX2, no AVX-512: bf16 is emulated
ZEN4 = ZEN3 | {"avx512f", "avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN3 | {"avx512f", "amx_tile", "amx_bf16"}


def machine(flags: frozenset, cores: int, cuda: bool = False) -> hardware.Machine:
    return hardware.Machine(cpu="test CPU", cores=cores, flags=flags, cuda=cuda)


def config(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["+experiment=math", *overrides])


@pytest.mark.parametrize("flags, native", [(ZEN3, False), (ZEN4, True), (SAPPHIRE_RAPIDS, True),
                                           (frozenset({"fp", "asimd", "sve", "bf16"}), True),  # Arm with BF16
                                           (frozenset({"fp", "asimd"}), False)])
def test_native_bf16_is_read_from_the_cpu_flags(flags, native):
    assert machine(flags, 2).native_bf16 is native


@pytest.mark.parametrize("flags, gpu, dtype", [(ZEN3, False, "float32"), (ZEN4, False, "bfloat16"),
                                               (SAPPHIRE_RAPIDS, False, "bfloat16"), (ZEN3, True, "bfloat16")])
def test_engine_dtype(flags, gpu, dtype):
    assert hardware.engine_dtype(machine(flags, 2), gpu_engines=gpu)[0] == dtype


@pytest.mark.parametrize("cores, layout", [(1, (1, 1)), (2, (2, 1)), (4, (4, 1)), (8, (4, 2)), (16, (4, 4)),
                                           (6, (4, 1))])
def test_engine_layout(cores, layout):
    assert hardware.engine_layout(cores) == layout


@pytest.mark.parametrize("flags, cores, engines, dtype, bf16_cpu", [
    (ZEN3, 1, 1, "float32", False), (ZEN3, 2, 2, "float32", False), (ZEN3, 4, 4, "float32", False),
    (ZEN4, 1, 1, "bfloat16", True), (ZEN4, 2, 2, "bfloat16", True), (ZEN4, 4, 4, "bfloat16", True),
])
def test_the_default_config_resolves_for_each_machine(flags, cores, engines, dtype, bf16_cpu):
    cfg = config()
    line = hardware.resolve(cfg, machine(flags, cores), onednn=True)
    assert (cfg.sampler.num_samplers, cfg.sampler.num_cpus_per_sampler) == (engines, 1)
    assert cfg.sampler.engine.dtype == dtype and cfg.cluster.num_cpus == cores
    assert cfg.learner.threads == cores and cfg.learner.cpu_linear == "onednn"
    assert cfg.algo.sampler_is is bf16_cpu  # on exactly when the engines' precision differs from the learner's
    assert cfg.learner.lm_bf16 is bf16_cpu  # pretraining and SFT in bf16 only where the CPU computes it natively
    assert cfg.learner.bf16 == "auto"  # RL's forwards stay fp32 on any CPU
    check(cfg)  # the resolved config is a valid one: the engines fit the Ray instance
    assert line.startswith("[hardware] test CPU") and f"engines {engines} x 1 core" in line and dtype in line
    assert ("no native bf16" in line) is (flags == ZEN3)
    assert hardware.resolve(cfg, machine(flags, cores)) is None  # nothing left to choose


def test_explicit_values_win_over_the_probe():
    cfg = config("sampler.num_samplers=1", "sampler.engine.dtype=float32", "cluster.num_cpus=3",
                 "learner.cpu_linear=aten", "learner.threads=1", "algo.sampler_is=true",
                 "learner.lm_bf16=false")
    hardware.resolve(cfg, machine(ZEN4, 8), onednn=True)
    assert (cfg.sampler.num_samplers, cfg.sampler.num_cpus_per_sampler) == (1, 3)  # the cores left are its width
    assert cfg.sampler.engine.dtype == "float32" and cfg.cluster.num_cpus == 3
    assert (cfg.learner.threads, cfg.learner.cpu_linear, cfg.algo.sampler_is) == (1, "aten", True)
    assert cfg.learner.lm_bf16 is False


def test_learner_ranks_leave_the_engines_the_other_cores():
    cfg = config("learner.num_workers=2")
    hardware.resolve(cfg, machine(ZEN3, 4), onednn=True)
    assert cfg.sampler.num_samplers * cfg.sampler.num_cpus_per_sampler == 2
    check(cfg)


def test_no_onednn_means_aten_linears_and_gpu_engines_keep_their_layout():
    cfg = config("sampler=vllm_gpu")
    hardware.resolve(cfg, machine(ZEN3, 16, cuda=True), onednn=False)
    assert cfg.learner.cpu_linear == "aten"
    assert (cfg.sampler.num_samplers, cfg.sampler.num_gpus_per_sampler, cfg.sampler.engine.dtype) == (1, 1, "bfloat16")


def test_a_gpu_learner_pretrains_in_bf16_on_any_cpu():
    cfg = config("learner.device=cuda")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("torch.cuda.is_available", lambda: True)
        hardware.resolve(cfg, machine(ZEN3, 2, cuda=True), onednn=True)
    assert cfg.learner.lm_bf16 is True


def test_the_learner_in_bf16_needs_no_correction_beside_bf16_engines():
    cfg = config("learner.bf16=true")
    hardware.resolve(cfg, machine(ZEN4, 2), onednn=True)
    assert cfg.sampler.engine.dtype == "bfloat16" and cfg.algo.sampler_is is False


@pytest.mark.parametrize("override, message", [
    ("sampler.num_samplers=many", "sampler.num_samplers='many': expected auto or a number >= 1"),
    ("sampler.num_samplers=0", "sampler.num_samplers=0: must be >= 1"),
    ("learner.threads=true", "learner.threads=True: expected auto or a number >= 1"),
    ("learner.cpu_linear=mkl", "learner.cpu_linear='mkl': expected auto, onednn or aten"),
])
def test_a_bad_hardware_knob_names_its_key(override, message):
    cfg = config(override)
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        check(cfg)


def test_the_probe_reads_this_machine():
    m = hardware.probe(cuda=False)
    assert m.cores >= 1 and m.cpu
    assert set(m.record()) == {"cpu", "cores", "native_bf16", "flags"}
    assert OmegaConf.create(m.record())  # plain values: it goes into benchmark JSON
