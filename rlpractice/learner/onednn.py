"""fp32 linear layers on a CPU through oneDNN rather than the BLAS torch calls for a matmul: the same fp32
arithmetic, faster where the BLAS keeps to older kernels (an AMD CPU's MKL; scripts/bench_learner.py measures it)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


@functools.cache
def onednn_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and callable(torch.ops.mkldnn._linear_pointwise)
    except (AttributeError, RuntimeError):
        return False


def _dense_product(a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """a @ b_t.T through oneDNN; `a` must be contiguous, `b_t` may be a transposed view."""
    return torch.ops.mkldnn._linear_pointwise(a, b_t, None, "none", [], "")


class OneDNNLinear(torch.autograd.Function):
    """F.linear in fp32 with the forward and both backward products run by oneDNN."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = x.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, weight = ctx.saved_tensors
        dy = dy.contiguous()
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        dx = _dense_product(dy, weight.t()) if ctx.needs_input_grad[0] else None
        dw = None
        if ctx.needs_input_grad[1]:  # dy^T x; oneDNN's first operand must be dense: transpose the narrower one
            if x2.shape[1] <= dy2.shape[1]:
                dw = _dense_product(x2.t().contiguous(), dy2.t()).t()
            else:
                dw = _dense_product(dy2.t().contiguous(), x2.t())
        db = dy2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


class OneDNNLinears(TorchFunctionMode):
    """Inside it, every fp32 CPU F.linear on plain tensors is a `OneDNNLinear` (anything else runs as it was)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and len(args) >= 2:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            plain = all(type(t) in (torch.Tensor, torch.nn.Parameter) for t in (x, weight, bias) if t is not None)
            if (plain and x.dtype == weight.dtype == torch.float32 and x.device.type == "cpu"
                    and weight.is_contiguous() and not torch.is_autocast_enabled("cpu")):
                return OneDNNLinear.apply(x, weight, bias)
        return func(*args, **kwargs)
