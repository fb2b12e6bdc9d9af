"""``zigprune eval RUN_DIR``: how a saved slim model does, on its run's own data or other data.

Image runs: accuracy and loss on a dataset's test split. Text runs: how closely the slim model follows
the dense Hugging Face model it was pruned from (cosine, top-1 neighbour, perplexity for decoders).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import data
from ..data.text import is_text
from ..errors import DataError
from ..io.plan import read_plan
from ..io.saved import load
from ..training import evaluate
from .run_data import load_run_data


@dataclass(frozen=True)
class RunEvaluation:
    """What ``evaluate_run`` measured: the quality figures, on what, and the slim model's size."""

    directory: Path
    quality: dict[str, float]
    evaluated: str
    params: int

    def describe(self) -> str:
        """One line for a person: the figures, what they were measured on, the params."""
        q = self.quality
        if "cosine" in q:
            language = (
                f"perplexity {q['perplexity']:.2f}, next token as dense {q['next_token']:.1%}, "
                if "perplexity" in q
                else ""
            )
            kept = f"top-1 neighbour kept {q['retrieval']:.1%}"
            figures = f"{language}cosine {q['cosine']:.4f} to the dense model, {kept}"
        else:
            figures = f"accuracy {q['accuracy']:.2%}, loss {q['loss']:.4f}"
        return f"{self.directory}: {figures} on {self.evaluated}; {self.params:,} params"


def evaluate_run(
    run_dir: str | Path,
    *,
    data_name: str | None = None,
    data_dir: str | None = None,
    subset: int | None = None,
    batch_size: int = 512,
    factory: Any = None,
    trust_factory: bool = False,
) -> RunEvaluation:
    """Load the run's slim model (checked against its saved outputs) and measure it on ``data_name``:
    by default the run's own data, with its recorded ``data_dir`` and ``subset``."""
    directory = Path(run_dir)
    slim = load(directory, factory=factory, trust_factory=trust_factory)
    plan = read_plan(directory)
    recorded = plan["metadata"]
    name = data_name or recorded.get("data")
    if not name:
        raise DataError(f"{directory} does not record its dataset; pass --data ({', '.join(data.names())})")
    params = sum(p.numel() for p in slim.parameters())
    if is_text(name):
        own = recorded.get("data") if is_text(recorded.get("data") or "") else name
        found = load_run_data(
            plan["spec"]["text"], own, max_length=recorded.get("max_length", 128), eval_data=name
        )
        return RunEvaluation(directory, found.quality(found.spec.build())(slim), found.evaluated, params)
    same = data_name is None
    data_dir = data_dir or (recorded.get("data_dir") if same else None)
    subset = subset if subset is not None else (recorded.get("subset") if same else None)
    dataset = data.load(name, data_dir, subset=subset)
    found = evaluate(slim, dataset.test, batch_size=batch_size)
    quality = {"accuracy": found.accuracy, "loss": found.loss}
    return RunEvaluation(directory, quality, f"{found.count} test samples of {name}", params)
