"""What episodes with an environment did: turns, observation tokens, per-turn reward, and recoveries (an episode that
ends correct after a failed attempt). Nothing for samples without an environment's rewards."""

from __future__ import annotations

import numpy as np

from rlpractice.rollout.batch import Sample


def solved(reward: float | None) -> bool:
    return reward is not None and reward >= 1.0


def episode_metrics(samples: list[Sample]) -> dict:
    episodes = [s for s in samples if s.turn_rewards is not None]
    if not episodes:
        return {}
    turn_rewards = [r if r is not None else 0.0 for s in episodes for r in s.turn_rewards]
    failed_first = [s for s in episodes if not (s.turn_rewards and solved(s.turn_rewards[0]))]
    recovered = [s for s in failed_first if any(solved(r) for r in s.turn_rewards[1:])]
    return {"env/turns": float(np.mean([s.turns for s in episodes])),
            "env/observation_tokens": float(np.mean([s.observation_tokens for s in episodes])),
            "env/turn_reward": float(np.mean(turn_rewards)) if turn_rewards else 0.0,
            "env/first_turn_pass_rate": 1.0 - len(failed_first) / len(episodes),
            "env/recovered": len(recovered) / len(episodes),  # share of all episodes
            "env/recovery_rate": len(recovered) / max(len(failed_first), 1),  # share of those that failed first
            "env/cut_at_turn_cap": float(np.mean([s.finish == "turns" for s in episodes])),
            # a retry the token cap cut counts as a failed one: a cap too small for two attempts looks like no recovery
            "env/retry_cut_at_token_cap": float(np.mean([s.finish == "length" for s in failed_first]))
            if failed_first else 0.0}


def attempts_solved(sample: Sample, k: int) -> bool:
    """Whether the episode got it right within its first `k` attempts (turns)."""
    return any(solved(r) for r in (sample.turn_rewards or [])[:k])
