"""`lamina train`, `experiments` and `predict` end to end: text, --json, exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lamina.cli import main
from tests.learning.labelled_store import labelled_store


def test_train_compare_predict_and_select(tmp_path: Path) -> None:
    store, _, _ = labelled_store(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--store", str(store.root), *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    out = invoke("train", "--labels", "folder", "--head", "logreg", "--class-weight", "balanced",
                 "--class-weight", "none")  # fmt: skip
    assert "cats" in out and "imbalance 3.0:1" in out
    assert "grid: 2 configurations" in out
    assert "cross-split duplicate pairs: 0" in out
    assert "next: lamina predict --experiment " in out
    rows = json.loads(invoke("experiments", "--json"))
    assert [r["class_weight"] for r in rows] == ["balanced", "none"]
    assert len(invoke("experiments").splitlines()) == 3
    out = invoke("predict", "--experiment", "best")
    assert "60 images predicted, 0 without a vector" in out and "drift rate" in out
    owls = invoke("select", "--where", "pred_label = 'owls' and pred_score > 0.5", "--ids")
    assert 8 <= len(owls.split()) <= 12
    err = invoke("predict", "--experiment", "nope", code=2)
    assert "no experiment 'nope'" in err
    err = invoke("train", "--labels", "meta:x", code=2)
    assert "no attached metadata" in err
