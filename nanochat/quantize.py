"""
Int8 weight-only quantization for faster CPU inference: every nn.Linear of a model becomes an Int8Linear whose
weights are stored as int8 (one scale per output row) and multiplied with torch's weight-only int8 kernel.
README.md ("Inference speed on a CPU") says when it pays. Nothing here is run directly:

    from nanochat.quantize import quantize_int8
    quantize_int8(model, torch.bfloat16)     # in place; for inference only
load_engine (nanochat/engine.py) applies it for `--quantize int8` (and `auto` on CPUs with native bf16).
"""

import torch


class Int8Linear(torch.nn.Module):
    """A bias-free Linear with int8 weights (one scale per output row, max |w| / 127) for inference.

    On CPU it runs torch's weight-only int8 kernel, which reads 4x fewer weight bytes than fp32: at batch 1 the
    matmuls of a small model are bound by reading weights, not by arithmetic.
    """

    def __init__(self, linear: torch.nn.Linear, act_dtype: torch.dtype):
        super().__init__()
        if linear.bias is not None:
            raise ValueError("Int8Linear supports bias-free linears only")
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(act_dtype))
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.act_dtype = act_dtype

    def forward(self, x):
        x2 = x.reshape(-1, self.in_features).to(self.act_dtype)
        if x2.device.type == "cpu":
            y = torch._weight_int8pack_mm(x2, self.weight_int8, self.scale)
        else:
            y = torch.nn.functional.linear(x2, self.weight_int8.to(self.act_dtype)) * self.scale
        return y.view(*x.shape[:-1], self.out_features)


def quantize_int8(model, act_dtype: torch.dtype = torch.bfloat16):
    """In place: every nn.Linear becomes an Int8Linear, the rest of the model (embedding, rotary tables) is cast to
    act_dtype, so the forward runs in act_dtype on int8 weights. For inference only (there are no gradients)."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, Int8Linear(child, act_dtype))
    for p in model.parameters():
        p.data = p.data.to(act_dtype)
    for name, buf in model.named_buffers():
        if buf.is_floating_point() and not name.endswith("scale"):
            buf.data = buf.data.to(act_dtype)
    return model
