"""CUDA IPC weight sync (sampler.weight_sync=cuda_ipc): engines on the learner's GPU read the new weights where
the learner keeps them, instead of from a checkpoint written to disk (filesystem) or copied through Ray's object
store (object_store). Only for engines on the learner's machine and GPU (colocated: sampler=vllm_gpu on one box).

The payload is the update format of vLLM's IPC weight-transfer engine (vllm/distributed/weight_transfer/
ipc_engine.py in vLLM 0.32, unpacked mode): each tensor's name, dtype and shape, and {GPU UUID: the arguments of
torch's rebuild_cuda_tensor}. The engine opens each handle as a view of the learner's memory and copies it into
its own weights (its model's load_weights, which also casts fp32 to the engine's bf16): no serialisation, no
second copy of the model.
"""

from __future__ import annotations

import torch
from torch.multiprocessing.reductions import reduce_tensor

from rlpractice.errors import UserError

# vllm.LLM keyword arguments and engine environment that turn on its IPC receiver; the handles hold Python
# objects (dtypes, storage classes), which vLLM only passes into its engine process with pickle allowed.
ENGINE_KWARGS = {"weight_transfer_config": {"backend": "ipc"}}
ENGINE_ENV = {"VLLM_ALLOW_INSECURE_SERIALIZATION": "1"}


def ipc_payload(model: torch.nn.Module) -> tuple[dict, list[torch.Tensor]]:
    """(vLLM IPC update info for every tensor of `model`'s state dict, the tensors it points into). The handles
    are views, not copies: keep the tensors alive and unchanged until every engine has loaded them."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        raise UserError(f"sampler.weight_sync=cuda_ipc: the learner is on {device}, and CUDA IPC shares GPU memory; "
                        "use learner.device=cuda, or sampler.weight_sync=filesystem")
    gpu = str(torch.cuda.get_device_properties(device).uuid)  # the engine finds its GPU by UUID, not by index
    info: dict = {"names": [], "dtype_names": [], "shapes": [], "ipc_handles": []}
    tensors = []
    for name, tensor in model.state_dict().items():  # HF names: what the engine's load_weights maps
        tensor = tensor.detach().contiguous()
        tensors.append(tensor)
        info["names"].append(name)
        info["dtype_names"].append(str(tensor.dtype).removeprefix("torch."))
        info["shapes"].append(list(tensor.shape))
        info["ipc_handles"].append({gpu: reduce_tensor(tensor)[1]})
    return info, tensors
