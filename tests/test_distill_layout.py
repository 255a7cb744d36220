"""The training-speed paths give the plain ones' values: 2x2 max pooling, unbind, channels-last."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from echodfkd.distill.module import DistillModule
from echodfkd.models.convlstm import ConvLSTMCell, stack_frames
from echodfkd.models.student import Student, max_pool2x2

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool2x2_equals_max_pool2d_values_and_gradient(dtype, ties):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 8, 10).to(dtype)
    if ties:  # many windows with two or more equal maxima: the gradient must go to the first, as max_pool2d's
        x = (x * 2).round().clamp(-1, 1)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = max_pool2x2(a), F.max_pool2d(b, 2)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert torch.equal(ya, yb)
    assert torch.equal(a.grad, b.grad)
    assert (a.grad != 0).sum() == ya.numel()  # one position per window (not every tied one)


def test_max_pool2x2_without_grad_and_channels_last_is_max_pool2d():
    x = torch.randn(2, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    assert torch.equal(max_pool2x2(x), F.max_pool2d(x, 2))
    assert torch.equal(max_pool2x2(x.contiguous()), F.max_pool2d(x, 2))


def test_forward_sequence_gradient_equals_per_frame_selects():
    """unbind in forward_sequence: the same outputs and the same input gradient as x[:, k] frame by frame."""
    torch.manual_seed(0)
    cell = ConvLSTMCell(3, 4)
    x = torch.randn(2, 5, 3, 6, 6)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    seq, _ = cell.forward_sequence(a)
    state, outs = cell.zero_state(b[:, 0]), []
    for k in range(b.shape[1]):
        state = cell(b[:, k], state)
        outs.append(state[0])
    ref = torch.stack(outs, 1)
    g = torch.randn_like(ref)
    seq.backward(g)
    ref.backward(g)
    torch.testing.assert_close(seq, ref, rtol=0, atol=0)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7)


def test_stack_frames_keeps_channels_last_frames_channels_innermost():
    frames = [torch.randn(2, 4, 3, 5).contiguous(memory_format=torch.channels_last) for _ in range(3)]
    out = stack_frames(frames)
    assert torch.equal(out, torch.stack(frames, 1))
    flat = out.reshape(6, 4, 3, 5)
    assert flat.is_contiguous(memory_format=torch.channels_last) and flat.data_ptr() == out.data_ptr()  # a view


def test_channels_last_student_gives_the_same_logits_gradients_and_keys():
    torch.manual_seed(0)
    plain = Student(blocks=3, filters=4).train()
    cl = Student(blocks=3, filters=4).train()
    cl.load_state_dict(plain.state_dict())
    assert cl.use_channels_last() == 2 + 2 + 1  # blocks 1-2 cells, two up-convs, the head
    assert cl.cells[0][0].conv.weight.is_contiguous()  # the first block stays NCHW
    assert cl.cells[1][0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not cl.cells[1][0].conv.weight.is_contiguous()
    assert list(cl.state_dict()) == list(plain.state_dict())
    x = torch.rand(2, 4, 1, 16, 16) * 255
    ya, yb = plain(x), cl(x)
    torch.testing.assert_close(yb, ya, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    for (name, p), q in zip(plain.named_parameters(), cl.parameters()):  # float rounding of other conv kernels
        scale = float(p.grad.abs().max())
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-5 * scale + 1e-4, msg=name)


def test_distill_module_channels_last_bf16_step_trains():
    """A bf16 autocast training step with fused gates and channels-last: finite loss, every weight gets a gradient."""
    torch.manual_seed(0)
    module = DistillModule(dict(blocks=2, filters=4), augment=1.0, fused_gates=True, channels_last=True).train()
    frames = torch.randint(0, 256, (2, 4, 1, 16, 16), dtype=torch.uint8)
    targets = torch.randint(0, 256, (2, 4, 1, 16, 16), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = module.training_step((frames, targets), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


def _fused_step(math_compiled: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Loss and weight gradients of one bf16 autocast step of a tiny student with fused gates."""
    from echodfkd.distill.fused import use_fused_update

    torch.manual_seed(0)
    student = Student(blocks=2, filters=4).train()
    use_fused_update(student, compiled=math_compiled)
    x = torch.rand(2, 4, 1, 16, 16) * 255
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = student(x).float().square().mean()
    loss.backward()
    return loss.detach(), [p.grad for p in student.parameters()]


def test_failing_compiled_gate_math_falls_back_to_eager_with_one_warning(caplog):
    from echodfkd.distill.fused import GateMath, _forward_math

    math = GateMath()
    math.compiled = True

    def broken(*args):
        raise RuntimeError("no C++ compiler\nsecond line")

    math.forward = broken
    gates, c = torch.randn(2, 8, 3, 3), torch.randn(2, 2, 3, 3)
    with caplog.at_level("WARNING"):
        got = math.run("forward", gates, c, 2, False)
    want = _forward_math(gates, c, 2, False)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert not math.compiled and math.forward is _forward_math
    lines = [r.getMessage() for r in caplog.records if "gate update failed" in r.getMessage()]
    assert len(lines) == 1 and "no C++ compiler" in lines[0] and "second line" not in lines[0]


@pytest.mark.slow
def test_compiled_gate_math_gives_the_eager_loss_and_gradients():
    """The compiled gate math (a build of minutes on a loaded 2-core machine) trains like the eager one."""
    loss, grads = _fused_step(False)
    loss_c, grads_c = _fused_step(True)
    from echodfkd.distill import fused

    assert fused._COMPILED is not None and fused._COMPILED.compiled  # it really ran compiled, no fallback
    # Inductor keeps the sigmoid/tanh results in fp32 where eager rounds them to bf16: bf16-level differences
    torch.testing.assert_close(loss_c, loss, rtol=5e-3, atol=1e-6)
    # bf16 rounding of the gate activations (eager) or not (compiled): up to ~2.5% of a gradient's norm
    # here, where a wrong gate slice or a missing term would be of the order of the gradient itself (the
    # floor: biases followed by batch norm, whose true gradient is 0, hold rounding noise alone)
    floor = 1e-3 * max(float(b.norm()) for b in grads)
    for a, b in zip(grads_c, grads):
        torch.testing.assert_close(a, b, rtol=0, atol=5e-2 * float(b.abs().max()) + floor)
        assert float((a - b).norm()) <= 5e-2 * float(b.norm()) + floor
