"""A gym-style environment (gymnasium convention): one step, the action is the model's answer."""


class AnswerCheck:
    def reset(self, *, seed=None, options=None):
        self.gold = float(options["answer"])
        return "", {}

    def step(self, action: str):
        tail = action.split("Answer:")[-1].split() if "Answer:" in action else []
        try:
            reward = 1.0 if tail and float(tail[0].rstrip(".")) == self.gold else 0.0
        except ValueError:
            reward = 0.0
        return "", reward, True, False, {"reason": f"reward {reward:g}"}
