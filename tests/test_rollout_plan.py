"""How sampling work is laid out over engines and cores (pure functions; no engine started)."""

from omegaconf import OmegaConf

from rlpractice.rollout.engine import EngineInfo, engine_cores
from rlpractice.rollout.samplers import cores_left, engine_env, machine_slots, plan_calls


def test_a_step_is_split_evenly_over_the_engines():
    calls = plan_calls(32, 32, 256, 1024, engines=2)  # the default RL step on two engines
    assert [sum(k for _, k in call) for call in calls] == [512, 512]
    assert [i for call in calls for i, _ in call] == list(range(32))  # every prompt once, in order


def test_large_groups_are_split_into_requests_and_calls():
    calls = plan_calls(2, 40, 8, 16, engines=1)
    assert calls == [[(0, 8), (0, 8)], [(0, 8), (0, 8)], [(0, 8), (1, 8)], [(1, 8), (1, 8)], [(1, 8), (1, 8)]]
    assert plan_calls(3, 5, 256, 1024, engines=4) == [[(0, 5)], [(1, 5)], [(2, 5)]]  # fewer groups than engines


def test_engines_on_one_machine_get_cores_of_their_own():
    assert machine_slots(["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.1"]) == [0, 0, 1, 2]
    assert [engine_cores([0, 1], slot, 1) for slot in (0, 1)] == [[0], [1]]
    assert engine_cores([4, 5, 6, 7, 2, 3], 1, 2) == [4, 5]  # sorted, then the slot's run of cores
    assert engine_cores([0, 1], 2, 1) is None  # too few cores: vLLM binds it itself
    assert engine_cores([0, 1, 2, 3], 0, 0.5) is None  # a fraction of a core cannot be pinned


def engine(machine: str, cores: list[int] | None) -> EngineInfo:
    return EngineInfo(1.0, 1, "node", machine, cores, True, "1")


def test_the_learner_gets_the_cores_the_engines_leave_on_its_machine():
    engines = [engine("a", [0]), engine("b", [1])]
    assert cores_left([0, 1, 2, 3], engines, "a") == [1, 2, 3]
    assert cores_left([0, 1], [engine("a", [0]), engine("a", [1])], "a") == []
    assert cores_left([0, 1], [engine("a", None)], "a") == []  # vLLM's binding: cores unknown


def test_only_cuda_ipc_engines_accept_pickled_weight_handles():
    """vLLM passes the IPC handles into its engine process only with pickle allowed; no other sync needs it."""
    for sync in ("filesystem", "object_store", "cuda_ipc"):
        env = engine_env(OmegaConf.create({"engine_in_process": False, "weight_sync": sync}))
        assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"
        assert ("VLLM_ALLOW_INSECURE_SERIALIZATION" in env) == (sync == "cuda_ipc")


def test_engine_env_from_the_config_reaches_the_engines():
    env = engine_env(OmegaConf.create({"engine_in_process": True, "weight_sync": "filesystem",
                                       "engine_env": {"VLLM_USE_AOT_COMPILE": 0, "VLLM_CPU_KVCACHE_SPACE": "2"}}))
    assert env == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_USE_AOT_COMPILE": "0", "VLLM_CPU_KVCACHE_SPACE": "2"}


def test_the_sampler_actors_module_imports_no_torch():
    """The actor sets its engine's thread settings before torch loads (`set_engine_threads`): its module, and the
    rollout records it builds, must not import torch themselves."""
    import subprocess
    import sys

    code = "import sys, rlpractice.rollout.engine; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
