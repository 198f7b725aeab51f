"""What one weight sync costs on a GPU, by model size: a checkpoint through the disk (weight_sync=filesystem)
against CUDA IPC (weight_sync=cuda_ipc), each into a receiving process on the same GPU.

    python scripts/bench_weight_sync.py [--sizes tiny,small,0.5b] [--repeats 3] [--out FILE]

The receiver stands in for an engine's worker: it keeps bf16 weights on the GPU and, per sync, either reads the
safetensors file the learner just wrote (filesystem) or opens the learner's tensors by their IPC handles
(`rlpractice.rollout.weight_transfer.ipc_payload`, vLLM 0.32's update format), and copies them into its weights.
Timed from the learner's side: save / handles, transfer, copy, reply. These are the transports' costs: vLLM's own
load_weights adds its bookkeeping on top of both. Needs a CUDA GPU (no vLLM). Writes runs/bench/weight_sync.json
unless --out.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_meta import ROOT, build, meta  # scripts/ is on sys.path when a script runs
from safetensors.torch import load_file
from torch.multiprocessing.reductions import rebuild_cuda_tensor

from rlpractice.rollout.weight_transfer import ipc_payload


def receiver(requests, replies) -> None:
    """An engine's worker, reduced to its weights: ("filesystem", folder) or ("cuda_ipc", update info)."""
    try:
        gpu = str(torch.cuda.get_device_properties(0).uuid)
    except Exception as e:  # noqa: BLE001 - reported to the learner's side, which would otherwise wait forever
        replies.put(f"receiver failed: {e!r}")
        return
    weights: dict[str, torch.Tensor] = {}
    for kind, what in iter(requests.get, None):
        try:
            replies.put(load(kind, what, gpu, weights))
        except Exception as e:  # noqa: BLE001
            replies.put(f"receiver failed on a {kind} sync: {e!r}")


def load(kind: str, what, gpu: str, weights: dict[str, torch.Tensor]) -> int:
    """One sync into `weights`; returns how many values they hold. ("reset", None): the next model is another."""
    if kind == "reset":
        weights.clear()
        return 0
    if kind == "filesystem":
        new = list(load_file(str(Path(what) / "model.safetensors"), device="cuda:0").items())
    else:
        new = []
        for name, handle in zip(what["names"], what["ipc_handles"], strict=True):
            args = list(handle[gpu])
            args[6] = 0  # the device index in this process
            new.append((name, rebuild_cuda_tensor(*args)))
    for name, tensor in new:
        if name not in weights:
            weights[name] = torch.empty(tensor.shape, dtype=torch.bfloat16, device="cuda:0")
        weights[name].copy_(tensor)  # what load_weights does: into the engine's own (bf16) weights
    torch.cuda.synchronize()
    return sum(t.numel() for t in weights.values())


def reply(replies, expected: int) -> None:
    got = replies.get(timeout=600)
    if got != expected:
        raise SystemExit(got if isinstance(got, str) else f"the receiver holds {got} values, expected {expected}")


def bench_size(size: str, repeats: int, requests, replies, folder: Path) -> dict:
    model = build(size).to("cuda")
    out = {"params": sum(p.numel() for p in model.parameters())}
    requests.put(("reset", None))
    reply(replies, 0)
    for kind in ("filesystem", "cuda_ipc", "filesystem", "cuda_ipc"):  # interleaved: each gets a warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            if kind == "filesystem":
                model.save_pretrained(folder, safe_serialization=True)
                requests.put((kind, str(folder)))
                reply(replies, out["params"])
            else:
                info, tensors = ipc_payload(model)
                requests.put((kind, info))
                reply(replies, out["params"])
                del tensors
                torch.cuda.ipc_collect()
            times.append(time.perf_counter() - start)
            print(f"[bench_weight_sync] {size} {kind}: {times[-1]:.3f} s", flush=True)
        out[f"{kind}_s"] = statistics.median(times)
    out["ipc_speedup"] = out["filesystem_s"] / out["cuda_ipc_s"]
    print(f"[bench_weight_sync] {size}: filesystem {out['filesystem_s']:.3f} s, cuda_ipc {out['cuda_ipc_s']:.3f} s, "
          f"{out['ipc_speedup']:.1f}x", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="tiny,small,0.5b")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_weight_sync needs a CUDA GPU (CUDA IPC shares GPU memory)")
    ctx = multiprocessing.get_context("spawn")
    requests, replies = ctx.Queue(), ctx.Queue()
    engine = ctx.Process(target=receiver, args=(requests, replies), daemon=True)
    engine.start()
    result = {**meta(), "device": torch.cuda.get_device_name(), "torch": torch.__version__, "sizes": {}}
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes.split(","):
            result["sizes"][size] = bench_size(size, args.repeats, requests, replies, Path(folder))
    requests.put(None)
    engine.join(timeout=60)
    out = Path(args.out) if args.out else ROOT / "runs" / "bench" / "weight_sync.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
