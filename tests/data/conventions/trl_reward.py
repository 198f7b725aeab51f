"""A reward function written for TRL's GRPOTrainer: batched, the gold answer as the `answer` column."""

import re


def answer_reward(prompts, completions, answer, **kwargs):
    rewards = []
    for completion, gold in zip(completions, answer, strict=True):
        found = re.findall(r"Answer:\s*(\S+)", completion)
        try:
            rewards.append(float(float(found[-1].rstrip(".")) == float(gold)) if found else 0.0)
        except ValueError:
            rewards.append(0.0)
    return rewards
