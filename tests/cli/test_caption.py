"""`lamina caption` end to end with a tiny random captioner: selection, the estimate
first, model + prompt version on every row, resume, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lamina.backends.captioners import prompt_version
from lamina.cli import main
from tests.backends.captioners.tiny import WORDS, save_tiny_captioner
from tests.conftest import write_photo


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_captioner(tmp_path_factory.mktemp("models") / "tiny-vit-gpt2")


def test_caption_selected_images(tmp_path: Path, tiny_model: Path) -> None:
    src = tmp_path / "src"
    for i in range(6):
        write_photo(src / "a" / f"{i}.jpg", i, size=(96, 64))
    (src / "a" / "cut.jpg").write_bytes((src / "a" / "0.jpg").read_bytes()[:200])
    runner = CliRunner()
    store = str(tmp_path / "store")

    def lamina(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--store", store, *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    lamina("scan", str(src))
    model = f"hf:{tiny_model}"
    # No clusters: the default selection (exemplars + outliers) says how to get one.
    out = lamina("caption", "-m", model, code=2)
    assert "lamina cluster" in out and "--where" in out

    out = lamina("caption", "-m", model, "--where", "rel_path like 'a/%'", "--max", "5",
                 "--dry-run")  # fmt: skip
    assert out.startswith("5 images selected (rel_path like 'a/%'), 5 to caption: about ")
    assert "MB of weights" in out  # no caption made yet: the rough prior, said so

    summary = json.loads(lamina("caption", "-m", model, "--all", "--max-new-tokens", "6", "--json"))
    assert summary["selected"] == 7 and summary["processed"] == 7 and summary["errors"] == 1
    rows = json.loads(
        lamina("sql", "--format", "json",
               "select rel_path, caption, model, prompt, prompt_version, settings, error "
               "from captions join files using (image_id) order by rel_path")
    )  # fmt: skip
    assert len(rows) == 7
    for row in rows:
        assert row["model"] == model and row["prompt"] == ""
        assert row["prompt_version"] == prompt_version("") == "e3b0c442"
        assert json.loads(row["settings"])["max_new_tokens"] == 6
        if row["rel_path"].endswith("cut.jpg"):
            assert row["caption"] is None and row["error"].startswith(("truncated", "decode"))
        else:
            assert row["error"] is None
            # Six of the model's own words (greedy: the same image, the same caption).
            assert len(row["caption"].split()) == 6 and set(row["caption"].split()) <= set(WORDS)
    # Other generation settings are another layer: all 7 to caption again.
    assert "7 to caption" in lamina("caption", "-m", model, "--all", "--dry-run")

    # Resumed: nothing left, and the estimate now comes from the captions made.
    out = lamina("caption", "-m", model, "--all", "--max-new-tokens", "6", "--dry-run")
    assert "0 to caption" in out and "median of 6 captions made before" in out
    # An encoder-decoder takes no prompt: every image is an error row naming why.
    out = json.loads(lamina("caption", "-m", model, "--all", "--prompt", "a photo of", "--json"))
    assert out["errors"] == 7
    bad = lamina("caption", "-m", "clip:x", "--all", code=2)
    assert "hf:<hub repo id or local folder>" in bad
