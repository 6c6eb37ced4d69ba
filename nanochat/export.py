"""
Exported inference: a checkpoint as two ONNX graphs with the KV cache as inputs and outputs (or the same graphs
converted to OpenVINO IR), and ExportedModel, which runs them behind the interface the Engine uses, so that
chat_cli and chat_web work unchanged on ONNX Runtime or OpenVINO.

    python -m scripts.export --format onnx          # -> <base>/export/sft_d4_step000526/ (the most trained model)
    python -m scripts.chat_cli --backend onnx

The two graphs, with L layers, Hkv key/value heads of size D, B rows and P cached positions:
    prefill(ids (1, T))                    -> logits of the last position (1, V), keys (L, 1, Hkv, T, D), values
    decode(ids (B, 1), keys, values (L, B, Hkv, P, D)) -> logits (B, V), keys and values (L, B, Hkv, P + 1, D)
The engine's batch-1 prefill into B rows becomes a repeat of the returned cache. fp32 weights and activations
(OpenVINO may run them in bf16 on CPUs that have it: its CPU default). A model with sliding-window attention is
exported with the same growing cache: its windowed layers mask the keys before the window (the torch backend's ring
cache, which stops growing at the window, has no graph form here).

Tests: pytest tests/test_export.py -q
"""

import json
import os
import time

import numpy as np
import torch

from nanochat.common import UserError

class _ConcatCache:
    """The KV-cache contract of the model (engine.KVCache's) over stacked past tensors: each layer's new keys are
    appended to its past ones, and the results are the graph's outputs."""

    def __init__(self, num_layers: int, past_k=None, past_v=None):
        self.past_k, self.past_v = past_k, past_v
        self.k, self.v = [None] * num_layers, [None] * num_layers

    def get_pos(self) -> int:
        return 0 if self.past_k is None else self.past_k.size(3)

    def insert_kv(self, layer_idx: int, k, v):
        if self.past_k is not None:
            k = torch.cat([self.past_k[layer_idx], k], dim=2)
            v = torch.cat([self.past_v[layer_idx], v], dim=2)
        self.k[layer_idx], self.v[layer_idx] = k, v
        return k, v


class _Step(torch.nn.Module):
    """model(ids, past) -> (last logits, keys, values): the function each graph computes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, past_k=None, past_v=None):
        cache = _ConcatCache(self.model.config.n_layer, past_k, past_v)
        logits = self.model(ids, kv_cache=cache)[:, -1, :]
        return logits, torch.stack(cache.k), torch.stack(cache.v)


def export_model(model, tokenizer, out_dir: str, fmt: str, source: dict) -> dict:
    """Write prefill/decode graphs (.onnx, and .xml/.bin for openvino), the tokenizer and export.json to out_dir.
    source: where the weights came from (stage, step), kept in export.json. Returns export.json's content."""
    from dataclasses import asdict
    config = model.config
    if fmt not in ("onnx", "openvino"):
        raise ValueError(f"format must be onnx or openvino, not {fmt!r}")
    model = model.float().eval()
    os.makedirs(out_dir, exist_ok=True)
    T = config.sequence_len
    head_dim = config.n_embd // config.n_head
    # Example inputs away from 0 and 1, which torch.export would take as fixed sizes.
    ids = torch.randint(0, config.vocab_size, (1, 5))
    past = torch.zeros(config.n_layer, 3, config.n_kv_head, 4, head_dim)
    rows, positions = torch.export.Dim("rows", min=1, max=1024), torch.export.Dim("cached", min=1, max=T - 1)
    graphs = {
        "prefill": ((ids,), ({1: torch.export.Dim("tokens", min=1, max=T)},), ["ids"]),
        "decode": ((ids[:, :1].expand(3, 1).contiguous(), past, past.clone()),
                   ({0: rows}, {1: rows, 3: positions}, {1: rows, 3: positions}), ["ids", "past_k", "past_v"]),
    }
    t0 = time.time()
    with torch.no_grad():
        for name, (args, shapes, inputs) in graphs.items():
            path = os.path.join(out_dir, f"{name}.onnx")
            torch.onnx.export(_Step(model), args, path, dynamo=True, dynamic_shapes=shapes, input_names=inputs,
                              output_names=["logits", "k", "v"], external_data=False, verbose=False)
            if fmt == "openvino":
                import openvino as ov
                # (save_model stores fp16 weights by default: keep fp32, the logits then match torch within 1e-4)
                ov.save_model(ov.convert_model(path), os.path.join(out_dir, f"{name}.xml"), compress_to_fp16=False)
                os.remove(path)
    tokenizer.save(os.path.join(out_dir, "tokenizer"))
    meta = {"format": fmt, "model_config": asdict(config), "source": source, "export_seconds": time.time() - t0}
    with open(os.path.join(out_dir, "export.json"), "w") as f:
        json.dump(meta, f, indent=2)
    return meta


class ExportedModel:
    """What the Engine needs of a GPT (config, get_device, model(ids, kv_cache=cache) -> logits (B, T', V) whose last
    row is the next token's), over the exported graphs. The engine's KVCache object only carries the state here:
    its position and this backend's key/value arrays."""

    def __init__(self, folder: str, backend: str, threads: int = 1, precision: str | None = None):
        from nanochat.gpt import GPTConfig
        path = os.path.join(folder, "export.json")
        if not os.path.exists(path):
            raise UserError(f"no export in {folder}: make one with python -m scripts.export --format {backend}")
        with open(path) as f:
            self.meta = json.load(f)
        if self.meta["format"] != backend:
            raise UserError(f"{folder} holds a {self.meta['format']} export, not {backend}: export again with "
                            f"--format {backend}")
        self.config = GPTConfig(**self.meta["model_config"])
        self.backend = backend
        if backend == "onnx":
            import onnxruntime as ort
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = threads
            sessions = {name: ort.InferenceSession(os.path.join(folder, f"{name}.onnx"), options,
                                                   providers=["CPUExecutionProvider"]) for name in ("prefill", "decode")}
            self._run = {name: (lambda s: lambda feeds: s.run(None, feeds))(s) for name, s in sessions.items()}
        elif backend == "openvino":
            import openvino as ov
            core = ov.Core()
            properties = {"INFERENCE_NUM_THREADS": threads}
            if precision:
                properties["INFERENCE_PRECISION_HINT"] = precision      # e.g. "f32" (tests: compare with torch)
            compiled = {name: core.compile_model(os.path.join(folder, f"{name}.xml"), "CPU", properties)
                        for name in ("prefill", "decode")}
            self._run = {name: (lambda c: lambda feeds: list(c(feeds).values()))(c) for name, c in compiled.items()}
        else:
            raise ValueError(f"backend must be onnx or openvino, not {backend!r}")

    def get_device(self):
        return torch.device("cpu")

    def __call__(self, ids: torch.Tensor, kv_cache):
        ids = ids.cpu().numpy().astype(np.int64)
        if kv_cache.pos == 0:
            logits, k, v = self._run["prefill"]({"ids": ids})
        else:
            k, v = kv_cache.k, kv_cache.v
            if k.shape[1] != ids.shape[0]:        # a batch-1 prefill for several samples: one cache row each
                k, v = np.repeat(k, ids.shape[0], axis=1), np.repeat(v, ids.shape[0], axis=1)
            logits, k, v = self._run["decode"]({"ids": ids, "past_k": k, "past_v": v})
        kv_cache.k, kv_cache.v = k, v
        kv_cache.pos += ids.shape[1]
        return torch.from_numpy(np.asarray(logits))[:, None, :]


def export_dir(source: str, model_tag: str, step: int) -> str:
    from nanochat.common import get_base_dir
    return os.path.join(get_base_dir(), "export", f"{source}_{model_tag}_step{step:06d}")


def load_exported_engine(source, model_tag, step, backend: str, threads: int = 1):
    """An Engine over the export of the checkpoint that (source, model_tag, step) resolve to."""
    from nanochat.checkpoint_manager import locate_checkpoint
    from nanochat.engine import Engine
    from nanochat.tokenizer import Tokenizer
    source, checkpoint_dir, step = locate_checkpoint(source, model_tag, step)
    tag = os.path.basename(checkpoint_dir)
    folder = export_dir(source, tag, step)
    if not os.path.exists(os.path.join(folder, "export.json")):
        raise UserError(f"no {backend} export of {source} {tag} step {step} in {folder}: make one with "
                        f"python -m scripts.export --format {backend} --source {source} --model-tag {tag} --step {step}")
    model = ExportedModel(folder, backend, threads)
    tokenizer = Tokenizer.from_directory(os.path.join(folder, "tokenizer"))
    return Engine(model, tokenizer), f"{source} {tag} step {step}, {backend} export"
