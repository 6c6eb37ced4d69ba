"""
Tests of checkpoint_manager: round trip, atomic files, latest-step resolution, clear errors for corrupt or
mismatched checkpoints, load_model with the tokenizer.

    pytest tests/test_checkpoint.py -q
"""

import json
import os
from dataclasses import asdict

import pytest
import torch

from conftest import byte_tokenizer
from nanochat.checkpoint_manager import (build_model_from, find_last_step, load_checkpoint, load_model,
                                         save_checkpoint)
from nanochat.common import UserError
from nanochat.gpt import build_model, config_from_depth


def small_model(vocab=265):
    return build_model(config_from_depth(1, vocab, 16, head_dim=32), "cpu")


def save(model, directory, step, opt=None):
    meta = {"step": step, "model_config": asdict(model.config), "val_bpb": 1.5, "loader": {"pos": [1, 2]}}
    save_checkpoint(directory, step, model.state_dict(), opt.state_dict() if opt else None, meta)


def test_round_trip_and_latest(tmp_path):
    model = small_model()
    torch.nn.init.normal_(model.lm_head.weight)
    adamw, muon = model.setup_optimizers()
    model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long)).backward()
    adamw.step()
    save(model, tmp_path, 5, adamw)
    save(model, tmp_path, 12)
    assert sorted(os.listdir(tmp_path)) == ["meta_000005.json", "meta_000012.json", "model_000005.pt",
                                            "model_000012.pt", "optim_000005.pt"]     # no temp files left
    assert json.loads((tmp_path / "meta_000005.json").read_text())["loader"] == {"pos": [1, 2]}
    assert find_last_step(str(tmp_path)) == 12
    model_data, optim_data, meta = load_checkpoint(str(tmp_path), 5, "cpu", load_optimizer=True)
    restored = build_model_from(model_data, meta, "cpu")
    for (name, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    adamw2 = restored.setup_optimizers()[0]
    adamw2.load_state_dict(optim_data)
    assert adamw2.state_dict()["state"][0]["step"] == 1


def test_incomplete_step_is_not_latest(tmp_path):
    model = small_model()
    save(model, tmp_path, 3)
    (tmp_path / "model_000009.pt").write_bytes(b"half")       # killed before meta was written
    assert find_last_step(str(tmp_path)) == 3


def test_corrupt_and_missing_files_are_named(tmp_path):
    model = small_model()
    save(model, tmp_path, 7)
    with open(tmp_path / "model_000007.pt", "r+b") as f:
        f.truncate(100)
    with pytest.raises(UserError, match="model_000007.pt is corrupt"):
        load_checkpoint(str(tmp_path), 7, "cpu")
    with pytest.raises(UserError, match=r"meta_000008.json does not exist.*steps present: \[7\]"):
        load_checkpoint(str(tmp_path), 8, "cpu")
    (tmp_path / "meta_000007.json").write_text("{not json")
    with pytest.raises(UserError, match="meta_000007.json is not valid JSON"):
        load_checkpoint(str(tmp_path), 7, "cpu")
    with pytest.raises(UserError, match="no checkpoints"):
        find_last_step(str(tmp_path / "empty"))


def test_mismatched_config_is_named(tmp_path):
    model = small_model()
    meta = {"model_config": {**asdict(model.config), "vocab_size": 300}}
    with pytest.raises(UserError, match=r"model_000001.pt: tensor transformer.wte.weight has shape \(265, 64\).*needs \(300, 64\)"):
        build_model_from(model.state_dict(), meta, "cpu", "model_000001.pt")
    meta = {"model_config": {**asdict(model.config), "n_layer": 2}}
    with pytest.raises(UserError, match="missing"):
        build_model_from(model.state_dict(), meta, "cpu")


def test_load_model_checks_tokenizer(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    tok = byte_tokenizer()      # 265 tokens with the specials
    tok.save(str(tmp_path / "tokenizer"))
    model = small_model(vocab=265)
    save(model, tmp_path / "base_checkpoints" / "d1", 4)
    save(model, tmp_path / "base_checkpoints" / "d1", 2)
    loaded, tokenizer, meta = load_model("base", "cpu", phase="eval")
    assert meta["step"] == 4 and not loaded.training and tokenizer.get_vocab_size() == 265
    save(small_model(vocab=300), tmp_path / "base_checkpoints" / "d2", 1)
    with pytest.raises(UserError, match="tokenizer has 265 tokens.*vocab_size 300"):
        load_model("base", "cpu")                 # d2 is the default (deepest) and does not fit the tokenizer
    with pytest.raises(UserError, match="unknown checkpoint source"):
        load_model("nope", "cpu")
