"""A reward function written for verl (`custom_reward_function.path`)."""


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    if "Answer:" not in solution_str:
        return {"score": 0.0, "pred": None}
    pred = solution_str.rsplit("Answer:", 1)[1].split()
    try:
        ok = bool(pred) and float(pred[0].rstrip(".")) == float(ground_truth)
    except ValueError:
        ok = False
    return {"score": 1.0 if ok else 0.0, "pred": pred[0] if pred else None}
