"""Several Ray nodes (virtual, on this machine): sampler engines are spread over nodes, and one step's
sampled and graded groups, before and after a weight sync and after an engine restart, are the same as with
all engines on one node.

The comparison samples greedily: vLLM's seeded sampling at temperature > 0 is not reproducible across two
fresh engines even on one node (measured: the same completions come back shifted, as the scheduler's
batching decides the order the random stream is drawn in), so only greedy decoding can show that placement
changes nothing."""

from pathlib import Path

import pytest
import ray
import torch
from hydra import compose, initialize_config_dir
from ray.cluster_utils import Cluster

from rlpractice import model as policy
from rlpractice.algorithm.advantages import advantages
from rlpractice.grading.pool import GradingPool
from rlpractice.rollout.samplers import Samplers, sample_groups
from rlpractice.textbook.math_textbook import build_textbook
from rlpractice.tokenizer import train_tokenizer
from tests.conftest import EAGER, ROOT

pytestmark = pytest.mark.slow


def three_steps(cluster: Cluster, cfg, model_dir: Path, problems, pool) -> tuple[list[str], list, list]:
    """Attach to `cluster` as a user would (cluster.address); sample and grade a step's groups, sync new
    weights to the engines, and do it again; kill an engine (it is restarted with the synced weights, from
    the object store when weights travel that way) and do it once more."""
    ray.shutdown()
    ray.init(address=cluster.address, include_dashboard=False, configure_logging=False)
    samplers = Samplers(str(model_dir / "ckpt"), cfg.sampler, cfg.cluster, seed=0)
    try:
        nodes = [info.node for info in samplers.info]
        groups, _ = sample_groups(samplers, pool, problems, n=1)  # greedy: one per prompt
        samplers.sync_weights(str(model_dir / "updated"))
        groups += sample_groups(samplers, pool, problems, n=1)[0]
        ray.kill(samplers.actors[0])
        groups += sample_groups(samplers, pool, problems, n=1)[0]
        assert samplers.restarts == 1
    finally:
        samplers.shutdown()
        ray.shutdown()
    texts = [[s.text for s in g.samples] for g in groups]
    rewards = [g.rewards for g in groups]
    return nodes, texts, advantages(torch.tensor(rewards), "grpo", scale_by_std=True).tolist()


def test_samplers_spread_over_nodes_and_give_the_same_step(tmp_path):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=math", "sampler.num_samplers=2", "sampler.max_new_tokens=16",
                                           "sampler.temperature=0", EAGER,
                                           "sampler.placement=STRICT_SPREAD", "cluster.address=auto"])
    book = build_textbook(0, 300, 100, 8, 4)
    tok = train_tokenizer(book.exposition, 400)
    model = policy.new_model(tok, 64, 2, 2, 128, 256, seed=0)
    policy.save(model, tok, tmp_path / "ckpt")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.save_pretrained(tmp_path / "updated")  # what the learner writes after a step
    problems = book.practice[:8]
    node_args = {"num_cpus": 1, "object_store_memory": 80 * 2**20}
    with GradingPool("math", num_workers=1) as pool:
        two_nodes = Cluster(initialize_head=True, head_node_args=node_args)
        two_nodes.add_node(**node_args)
        try:
            # no shared disk assumed between nodes: the weights travel through Ray's object store
            cfg.sampler.weight_sync = "object_store"
            nodes, texts, adv = three_steps(two_nodes, cfg, tmp_path, problems, pool)
        finally:
            two_nodes.shutdown()
        assert len(set(nodes)) == 2  # one engine per node

        # ... and here each engine core in a process of its own (vLLM's default): same outputs either way
        cfg.sampler.placement, cfg.sampler.weight_sync, cfg.sampler.engine_in_process = "PACK", "filesystem", False
        one_node = Cluster(initialize_head=True, head_node_args={**node_args, "num_cpus": 2})
        try:
            nodes_1, texts_1, adv_1 = three_steps(one_node, cfg, tmp_path, problems, pool)
        finally:
            one_node.shutdown()
        assert len(set(nodes_1)) == 1
    assert texts == texts_1 and adv == adv_1
    assert len({t for group in texts for t in group}) > 1  # the prompts got their own completions
    assert texts[:8] != texts[8:16]  # the synced weights are served
    assert texts[8:16] == texts[16:]  # ... also by the restarted engine
