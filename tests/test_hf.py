"""HESSO as the Hugging Face Trainer's optimizer: schedule from the Trainer, decay groups, exact zeros."""

import subprocess
import sys
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from conftest import bert  # noqa: E402

import zigprune as zp  # noqa: E402
from zigprune.errors import OptimizerError  # noqa: E402
from zigprune.hf import PruningCallback, decay_groups, group_optimizer  # noqa: E402

SEQ = 8


def tiny_bert() -> tuple[torch.nn.Module, list[dict], dict[str, torch.Tensor]]:
    """A random 2-layer BERT classifier, 32 random labelled sequences, and example inputs."""
    model = bert(
        kind="BertForSequenceClassification", vocab_size=128, max_position_embeddings=32, num_labels=2,
        attn_implementation="sdpa",
    )  # fmt: skip
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 128, (32, SEQ), generator=g)
    labels = torch.randint(0, 2, (32,), generator=g)
    mask = torch.ones(SEQ, dtype=torch.long)
    data = [{"input_ids": ids[i], "attention_mask": mask, "labels": labels[i]} for i in range(32)]
    return model, data, {"input_ids": ids[:2], "attention_mask": torch.ones(2, SEQ, dtype=torch.long)}


def test_hesso_in_the_trainer_takes_its_schedule_from_the_trainer_and_constructs(tmp_path) -> None:
    model, data, example = tiny_bert()
    space = zp.analyze(model, example)
    opt = zp.HESSO(
        space, lr=2e-3, variant="adamw", params=decay_groups(model, 0.01), target=0.3, total_steps=None
    )
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=5, per_device_train_batch_size=8,
        gradient_accumulation_steps=2, report_to="none", save_strategy="no", logging_strategy="no",
        use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=data, optimizers=(opt, None), callbacks=[PruningCallback(opt)]
    )
    trainer.train()
    assert trainer.state.max_steps == 10 and opt.total_steps == 10 and opt.step_count == 10
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]  # the Trainer's linear schedule ran on both
    zero = space.zero_groups()
    assert torch.equal(zero, opt.zig["pruned"]) and int(zero.sum()) == round(0.3 * space.num_groups)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "target not reached" warning: the schedule fit the run
        slim = space.construct()
    with torch.no_grad():
        torch.testing.assert_close(slim(**example).logits, model(**example).logits, rtol=1e-4, atol=1e-5)
    assert zp.count(slim, example)["params"] < zp.count(model, example)["params"]


def test_the_callback_finds_the_trainers_optimizer_or_says_what_is_wrong() -> None:
    model, _, example = tiny_bert()
    space = zp.analyze(model, example, check=False)
    opt = zp.HESSO(space, lr=1e-3, target=0.3, total_steps=None)
    wrapped = type("Wrapped", (), {"optimizer": opt})()
    state = transformers.TrainerState(max_steps=50)
    PruningCallback().on_train_begin(None, state, None, optimizer=wrapped)
    assert group_optimizer(wrapped) is opt and opt.total_steps == 50 and opt.start_step == 5
    with pytest.raises(OptimizerError, match=r"needs a zigprune optimizer .* not SGD"):
        PruningCallback().on_train_begin(None, state, None, optimizer=torch.optim.SGD(model.parameters()))
    assert isinstance(PruningCallback(), transformers.TrainerCallback)


def test_importing_zigprune_hf_does_not_import_transformers() -> None:
    code = "import sys, zigprune.hf; assert 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
