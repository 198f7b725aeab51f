"""Ray for the engines and the learner ranks: start it (or attach to a cluster), and place a group of actors."""

from __future__ import annotations

import logging
import os

import ray
from omegaconf import DictConfig
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group

from rlpractice import hardware
from rlpractice.caches import CACHE_VARIABLES
from rlpractice.errors import UserError


def start_ray(cluster: DictConfig) -> None:
    if ray.is_initialized():
        return
    keep_ray_messages_off_the_console()
    env = {"VLLM_LOGGING_LEVEL": cluster.vllm_log_level, "TOKENIZERS_PARALLELISM": "false",
           **{k: os.environ[k] for k in CACHE_VARIABLES if k in os.environ}}  # the engines' caches too
    kwargs = dict(include_dashboard=False, log_to_driver=cluster.log_to_driver,
                  runtime_env={"env_vars": env}, configure_logging=False)
    if cluster.address:
        ray.init(address=cluster.address, **kwargs)
    else:
        num_cpus = hardware.probe().cores if cluster.num_cpus == "auto" else cluster.num_cpus
        ray.init(num_cpus=num_cpus, object_store_memory=cluster.object_store_mb * 2**20,
                 _temp_dir=cluster.temp_dir or None, **kwargs)


def keep_ray_messages_off_the_console() -> None:
    """Ray's driver-side notices (token authentication, deduplication hints) go where the run's other library
    messages go, its log file, when the command line set one up (hydra.job_logging); else Ray's own way."""
    if not any(isinstance(h, logging.FileHandler) for h in logging.getLogger().handlers):
        return
    ray_logger = logging.getLogger("ray")
    for handler in list(ray_logger.handlers):
        if type(handler) is logging.StreamHandler:
            ray_logger.removeHandler(handler)
    ray_logger.propagate = True


def place_group(what: str, bundle: dict, count: int, strategy: str, cluster: DictConfig, fix: str) -> PlacementGroup:
    """`count` bundles of `bundle` placed with `strategy` (SPREAD puts them on different nodes when the cluster has
    several); if Ray cannot within cluster.placement_timeout_s, one line naming `what` and the knobs (`fix`)."""
    group = placement_group([bundle] * count, strategy=strategy)
    if not group.wait(timeout_seconds=cluster.placement_timeout_s):
        remove_placement_group(group)
        raise UserError(f"Ray could not place {count} {what} of {bundle} each (strategy {strategy}) within "
                        f"{cluster.placement_timeout_s}s: the cluster has {ray.cluster_resources()}. {fix}")
    return group
