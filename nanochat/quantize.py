"""
Int8 weight-only quantization for faster CPU inference: every nn.Linear of a model becomes an Int8Linear whose
weights are stored as int8 (one scale per output row) and multiplied with torch's weight-only int8 kernel.
README.md ("Inference speed on a CPU") says when it pays. Nothing here is run directly:

    from nanochat.quantize import quantize_int8
    quantize_int8(model, torch.bfloat16)     # in place; for inference only
load_engine (nanochat/engine.py) applies it for `--quantize int8` (and `auto` on CPUs with native bf16).

Int8 is also a storage format, for small checkpoints to ship (scripts/make_space.py): int8_state_dict keeps every
Linear weight as int8 rows with one fp32 scale each (a quarter of their fp32 bytes; the embedding stays fp32);
load_model reads such a checkpoint back (dequantize_state_dict) into fp32 weights, which --quantize int8 turns into
the very same int8 values again, so the shipped model computes exactly what the quantized original did.
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


INT8_SUFFIX, SCALE_SUFFIX = ".int8", ".int8_scale"


def int8_state_dict(model) -> dict:
    """The model's state dict for storage: the weight of every nn.Linear (what quantize_int8 quantizes) becomes
    `name.int8` (int8, one row per output) and `name.int8_scale` (fp32, max |row| / 127); the rest (the embedding,
    norms) stays as it is."""
    linear = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    out = {}
    for name, t in model.state_dict().items():
        if name in linear:
            w = t.detach().float()
            scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
            out[name + INT8_SUFFIX] = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
            out[name + SCALE_SUFFIX] = scale
        else:
            out[name] = t
    return out


def dequantize_state_dict(state: dict) -> dict:
    """The inverse of int8_state_dict, in fp32 (weights rounded to their int8 grid)."""
    out = {}
    for name, t in state.items():
        if name.endswith(INT8_SUFFIX):
            base = name.removesuffix(INT8_SUFFIX)
            out[base] = t.float() * state[base + SCALE_SUFFIX][:, None]
        elif not name.endswith(SCALE_SUFFIX):
            out[name] = t
    return out
