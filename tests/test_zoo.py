"""Every zoo model builds, runs its example input and honours in_channels/num_classes."""

import pytest
import torch
from torch import nn

from zigprune import models
from zigprune.models.resnet_cifar import CifarResNet


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run an eval-mode, no-grad forward pass (fast and deterministic)."""
    with torch.no_grad():
        return model.eval()(x)


def _params(model: nn.Module) -> int:
    """Total number of parameters."""
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", models.names())
def test_every_model_runs_its_example_input(name: str) -> None:
    out = _forward(models.create(name), models.example_input(name))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_example_input_shapes_and_dtypes() -> None:
    assert models.example_input("resnet20", batch=3).shape == (3, 3, 32, 32)
    assert models.example_input("digits_cnn").shape == (2, 1, 8, 8)
    assert models.example_input("conv1d_net").shape == (2, 3, 64)
    assert models.example_input("mlp").shape == (2, 64)
    ids = models.example_input("transformer_classifier")
    assert ids.shape == (2, 16) and ids.dtype == torch.long
    assert int(ids.min()) >= 0 and int(ids.max()) < 100
    assert torch.equal(models.example_input("mlp"), models.example_input("mlp"))


@pytest.mark.parametrize(
    ("name", "shape", "kwargs"),
    [
        ("resnet20", (1, 28, 28), {}),
        ("resnet18", (1, 28, 28), {"small_input": True}),
        ("resnet50", (1, 28, 28), {"small_input": True}),
        ("vgg16_bn", (1, 28, 28), {"image_size": 28}),
        ("mobilenetv2", (1, 28, 28), {}),
        ("densenet_small", (1, 28, 28), {}),
        ("digits_cnn", (1, 8, 8), {}),
        ("conv1d_net", (1, 50), {}),
    ],
)
def test_single_channel_seven_class_variants(
    name: str, shape: tuple[int, ...], kwargs: dict[str, object]
) -> None:
    model = models.create(name, in_channels=1, num_classes=7, **kwargs)
    out = _forward(model, torch.randn(2, *shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_vgg_classifier_consumes_flattened_feature_map() -> None:
    model = models.create("vgg16_bn", image_size=64)
    assert model.classifier[0].in_features == 512 * 2 * 2
    assert _forward(model, torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_width_multipliers_change_size() -> None:
    assert _params(models.create("resnet20", width=0.5)) < _params(models.create("resnet20"))
    small = models.create("mobilenetv2", width_mult=0.5)
    assert _params(small) < _params(models.create("mobilenetv2"))
    assert _forward(small, models.example_input("mobilenetv2")).shape == (2, 10)


def test_train_mode_forward_backward() -> None:
    model = models.create("resnet20").train()
    model(models.example_input("resnet20")).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="valid names:") as error:
        models.create("resnet-20")
    assert all(name in str(error.value) for name in models.names())
    with pytest.raises(KeyError, match="mlp"):
        models.example_input("nope")


def test_duplicate_registration_is_rejected() -> None:
    with pytest.raises(ValueError, match="already registered"):
        models.register("resnet20", input_shape=(3, 32, 32))(nn.Identity)


def test_bad_cifar_depth_is_rejected() -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(depth=21)


@pytest.mark.parametrize(("name", "published"), [("resnet20", 0.27e6), ("resnet56", 0.85e6)])
def test_cifar_resnet_parameter_counts_match_paper(name: str, published: float) -> None:
    assert _params(models.create(name)) == pytest.approx(published, rel=0.10)
