"""Student architecture: reference parameter counts, streaming equals the full pass, save/load."""

from __future__ import annotations

import json

import pytest
import torch

from echodfkd.errors import ModelError
from echodfkd.models import Student

# Reference counts of the (B, l) grid; (1,1) and (4,1) are stated in DESIGN.md, the rest follow from
# the same architecture rules and are checked by the closed form in test_param_count_closed_form.
REFERENCE = {(1, 1): 5_701, (4, 1): 714_577}


def closed_form(blocks: int, layers: int, f: int = 12) -> int:
    """Parameter count from the architecture rules, computed independently of the module."""
    total, prev = 0, 1
    for b in range(blocks):
        w = f * 2 ** b
        for j in range(layers):
            cin = prev if j == 0 else w
            total += (cin + w) * 4 * w * 9 + 4 * w + 2 * w
        prev = w
    for b in range(blocks - 2, -1, -1):
        total += f * 2 ** (b + 1) * f * 2 ** b * 9 + f * 2 ** b + 2 * f * 2 ** b
    return total + f + 1


@pytest.mark.parametrize("bl,count", REFERENCE.items())
def test_reference_param_counts(bl, count):
    assert Student(*bl).num_parameters() == count


@pytest.mark.parametrize("blocks", [1, 2, 3, 4])
@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_param_count_closed_form(blocks, layers):
    assert Student(blocks, layers).num_parameters() == closed_form(blocks, layers)


@pytest.mark.parametrize("kwargs", [dict(), dict(skip=True), dict(residual=True, layers=2), dict(out_channels=2)])
def test_streaming_equals_full_pass(kwargs):
    torch.manual_seed(0)
    model = Student(blocks=3, **kwargs).eval()
    with torch.no_grad():
        for m in model.modules():  # non-trivial BN statistics so the check means something
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        clip = torch.rand(2, 7, 1, 32, 32) * 255
        full = model(clip)
        state, steps = None, []
        for t in range(clip.shape[1]):
            logits, state = model.step(clip[:, t], state)
            steps.append(logits)
    assert full.shape == (2, 7, kwargs.get("out_channels", 1), 32, 32)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-4, atol=1e-4)


def test_independent_streams_do_not_mix():
    torch.manual_seed(1)
    model = Student(blocks=2).eval()
    a, b = torch.rand(1, 5, 1, 16, 16) * 255, torch.rand(1, 5, 1, 16, 16) * 255
    with torch.no_grad():
        sa, sb = None, None
        for t in range(5):
            la, sa = model.step(a[:, t], sa)
            lb, sb = model.step(b[:, t], sb)
        torch.testing.assert_close(la, model(a)[:, -1], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(lb, model(b)[:, -1], rtol=1e-4, atol=1e-4)


def test_indivisible_size_refused():
    with pytest.raises(ValueError, match="multiple of 8"):
        Student(blocks=4)(torch.zeros(1, 2, 1, 60, 60))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(2)
    model = Student(blocks=2, layers=2, skip=True).eval()
    model.save_pretrained(tmp_path, extra_config={"thresholds": {"dice": 0.31}})
    loaded = Student.from_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["params"] == model.num_parameters() and cfg["thresholds"]["dice"] == 0.31
    x = torch.rand(1, 3, 1, 16, 16) * 255
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(ModelError, match="missing"):
        Student.from_pretrained(tmp_path)
    Student(blocks=2).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["blocks"] = 3
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="do not match"):
        Student.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="safetensors"):
        Student.from_pretrained(tmp_path)
