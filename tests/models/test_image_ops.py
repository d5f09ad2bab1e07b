"""Image operations shared by R and the losses: the differentiable histogram equalisation against OpenCV's."""

import pytest
import torch


def test_soft_equalize_matches_opencv_and_keeps_gradients():
    """soft_equalize on 8-bit images lands within a grey level of the exact (OpenCV) equalisation,
    flat, dark and few-level images included; it ignores a monotone tone change of its input, and
    its gradient reaches every pixel."""
    from simgan.models.refiner import soft_equalize
    from simgan.simulators.webcam import equalize_histograms

    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (35, 55), generator=g),                       # uniform noise
            (torch.randn(35, 55, generator=g) * 20 + 60).clamp(0, 255).round(),   # dark, narrow
            torch.randint(0, 4, (35, 55), generator=g) * 40 + 100,                 # four levels
            torch.full((35, 55), 77)]                                              # flat
    u8 = torch.stack(imgs).to(torch.uint8).numpy()
    exact = torch.tensor(equalize_histograms(u8), dtype=torch.float32)
    x = torch.tensor(u8, dtype=torch.float32)[:, None] / 127.5 - 1.0
    soft = ((soft_equalize(x)[:, 0] + 1.0) * 127.5).round()
    assert (soft[:3] - exact[:3]).abs().max().item() <= 1.0
    assert torch.isfinite(soft[3]).all()  # a flat image does not divide by zero
    # invariant to a monotone tone curve of the input (up to the bins' width: 4 grey levels)
    assert (soft_equalize(torch.tanh(2 * x[:1])) - soft_equalize(x[:1])).abs().max().item() < 0.03
    # differentiable: every pixel of an image with distinct values gets a gradient
    v = (torch.rand(1, 1, 20, 30, generator=g) * 2 - 1).requires_grad_()
    (soft_equalize(v) * torch.randn(1, 1, 20, 30, generator=g)).sum().backward()
    assert (v.grad != 0).float().mean().item() > 0.95



def test_clamp_inward_lets_a_saturated_pixel_come_back_and_never_pushes_it_out():
    from simgan.models.image_ops import clamp_inward

    y = torch.tensor([-1.5, -0.5, 0.5, 1.5, -1.5, 1.5], requires_grad=True)
    out = clamp_inward(y)
    assert torch.equal(out, y.detach().clamp(-1, 1))
    # losses that want every pixel lower (+1) or higher (-1): descending moves y by -grad
    out.backward(torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0, -1.0]))
    # inside: passed; -1.5 asked lower: blocked (further out); 1.5 asked lower: passed (back in);
    # -1.5 asked higher: passed (back in); 1.5 asked higher: blocked
    assert y.grad.tolist() == [0.0, 1.0, 1.0, 1.0, -1.0, 0.0]


@pytest.mark.parametrize("inward", [True, False])
def test_refiner_clamp_gradient_past_the_range(inward):
    """A residual R whose correction pushed a pixel past -1 still hears self-regularisation there
    with the inward clamp (the default); ``refiner.inward_clamp: false`` (the hand demo) is a plain
    clamp, which passes no gradient there. Both output the clamped image."""
    from simgan.config import RefinerConfig
    from simgan.models.refiner import Refiner

    r = Refiner(RefinerConfig(width=4, num_blocks=1, inward_clamp=inward), 1)
    with torch.no_grad():
        r.head.bias.fill_(-3.0)
    x = torch.zeros(1, 1, 6, 6)
    y = r(x)
    assert torch.equal(y, torch.full_like(x, -1.0))
    (y - x).abs().mean().backward()
    grad = r.head.bias.grad.item()
    assert grad < 0 if inward else grad == 0  # descending raises the bias: the pixels come back
