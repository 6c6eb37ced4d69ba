"""
Exported inference (nanochat/export.py, scripts/export.py): the ONNX and OpenVINO graphs' logits match torch's over a
prefill and decode steps, at batch 1 and after a batch-1 prefill into several rows, past a sliding window; the Engine
on an export picks torch's greedy tokens; scripts.export writes where chat_cli --backend looks.

    pytest tests/test_export.py -q
"""

import json

import pytest
import torch

from conftest import random_gpt
from nanochat.common import UserError
from nanochat.engine import Engine, KVCache
from nanochat.export import ExportedModel, export_model


def small_model(vocab_size, **options):
    return random_gpt(std=0.2, seed=3, sequence_len=64, vocab_size=vocab_size, n_layer=2, n_head=4, n_kv_head=2,
                      n_embd=64, **options).eval()


@pytest.fixture(scope="module", params=["onnx", "openvino"])
def exported(request, byte_tok, tmp_path_factory):
    """(torch model, its export) for each format: one export per module (each takes a few seconds). The model has
    both options: SwiGLU, and a window of 8 in one layer of two, which the 21 positions of the tests below pass."""
    model = small_model(byte_tok.get_vocab_size(), mlp="swiglu", window=8, window_pattern="SL")
    folder = tmp_path_factory.mktemp(request.param)
    export_model(model, byte_tok, str(folder), request.param, {"stage": "test"})
    precision = "f32" if request.param == "openvino" else None    # not bf16, where the CPU has it: compare with fp32
    return model, ExportedModel(str(folder), request.param, precision=precision), folder


def test_logits_match_torch_over_prefill_and_decode(exported):
    model, backend, _ = exported
    torch.manual_seed(0)
    prompt, continuations = torch.randint(0, 256, (1, 9)), torch.randint(0, 256, (3, 12))
    cache = KVCache(3, 21, model.config.n_layer)
    logits = [backend(prompt, cache)[:, -1].expand(3, -1)]           # batch-1 prefill, then 3 rows
    logits += [backend(continuations[:, t:t + 1], cache)[:, -1] for t in range(12)]
    with torch.no_grad():
        full = model(torch.cat([prompt.expand(3, -1), continuations], dim=1))
    torch.testing.assert_close(torch.stack(logits, dim=1), full[:, 8:], rtol=1e-3, atol=1e-3)
    assert cache.k.shape[1:4] == (3, model.config.n_kv_head, 21)


def test_engine_on_the_export_picks_torchs_greedy_tokens(exported, byte_tok):
    model, backend, _ = exported
    prompt = byte_tok.encode("The cat sat", prepend="<|bos|>")
    ours = [c[0] for c, _ in Engine(backend, byte_tok).generate(prompt, max_tokens=20, temperature=0.0)]
    theirs = [c[0] for c, _ in Engine(model, byte_tok).generate(prompt, max_tokens=20, temperature=0.0)]
    assert ours == theirs


def test_export_json_says_what_it_holds(exported):
    model, backend, folder = exported
    meta = json.loads((folder / "export.json").read_text())
    assert meta["model_config"]["mlp"] == "swiglu" and meta["model_config"]["window"] == 8
    assert meta["format"] == backend.backend
    with pytest.raises(UserError, match="not onnx" if backend.backend == "openvino" else "not openvino"):
        ExportedModel(str(folder), "onnx" if backend.backend == "openvino" else "openvino")


def test_the_script_exports_where_chat_cli_looks(base_dir, byte_tok, capsys):
    """scripts.export on a saved sft checkpoint, then chat_cli --backend onnx answers as chat_cli on torch does."""
    from dataclasses import asdict
    from nanochat.checkpoint_manager import save_checkpoint
    from scripts import chat_cli
    from scripts import export as export_script
    model = small_model(byte_tok.get_vocab_size())
    save_checkpoint(str(base_dir / "base" / "chatsft_checkpoints" / "d2"), 5, model.state_dict(), None,
                    {"step": 5, "model_config": asdict(model.config)})
    ask = ["-p", "Hello there", "--max-tokens", "12", "--temperature", "0", "--quantize", "none"]
    with pytest.raises(UserError, match="no onnx export of sft d2 step 5"):
        chat_cli.main(ask + ["--backend", "onnx"])
    result = export_script.main(["--format", "onnx"])
    assert result["out"].endswith("export/sft_d2_step000005") and result["max_logit_error"] < 1e-3
    capsys.readouterr()
    chat_cli.main(ask)
    on_torch = capsys.readouterr().out
    chat_cli.main(ask + ["--backend", "onnx"])
    assert capsys.readouterr().out == on_torch and on_torch.strip()
