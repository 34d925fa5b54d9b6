"""Label files and prompt templates: parsing, normalising, and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.core.errors import LaminaError
from lamina.tagging.labels import (
    check_templates,
    load_labels,
    normalise_label,
    normalise_labels,
    prompts,
)


def write(tmp_path: Path, data: bytes | str, name: str = "labels.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_lowercased_stripped_deduplicated_in_order(tmp_path: Path) -> None:
    text = (
        "  Cup of Coffee \nCAT\n\n# animals\ncat\nRocket\n   # indented comment\ncup of  coffee\n"
    )
    assert load_labels(write(tmp_path, text)) == ["cup of coffee", "cat", "rocket"]


def test_trailing_comments_need_a_blank_before_the_hash(tmp_path: Path) -> None:
    text = "herbarium sheet   # pressed plants\nc# code\nsharp#\n"
    assert load_labels(write(tmp_path, text)) == ["herbarium sheet", "c# code", "sharp#"]


def test_bom_and_crlf_and_non_ascii(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbfCaf\xc3\xa9\r\nStra\xc3\x9fe\r\n"
    assert load_labels(write(tmp_path, data)) == ["café", "straße"]


def test_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(LaminaError, match="does not exist") as info:
        load_labels(tmp_path / "nope.txt")
    assert str(tmp_path / "nope.txt") in str(info.value)
    with pytest.raises(LaminaError, match="is a folder"):
        load_labels(tmp_path)


@pytest.mark.parametrize("text", ["", "\n\n", "   \n\t\n"])
def test_empty_file_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(LaminaError, match="is empty") as info:
        load_labels(path)
    assert str(path) in str(info.value)


def test_only_comments_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "# labels\n\n  # none yet\n")
    with pytest.raises(LaminaError, match="only comments") as info:
        load_labels(path)
    assert str(path) in str(info.value) and "3 lines" in str(info.value)


def test_not_utf8_names_the_line_and_byte(tmp_path: Path) -> None:
    path = write(tmp_path, "cat\ndog\ncaf\xe9\nrocket\n".encode("latin-1"))
    with pytest.raises(LaminaError) as info:
        load_labels(path)
    text = str(info.value)
    assert "not UTF-8" in text and "line 3" in text and "0xe9" in text
    assert "byte offset 11" in text and str(path) in text and "iconv" in text


def test_first_line_bad_byte(tmp_path: Path) -> None:
    with pytest.raises(LaminaError, match="line 1 has the byte 0xff"):
        load_labels(write(tmp_path, b"\xff\xfec\x00a\x00t\x00"))  # UTF-16


def test_normalise_labels() -> None:
    assert normalise_label("  Herbarium \t Sheet ") == "herbarium sheet"
    assert normalise_labels(["B", "a", "b", " A "]) == ["b", "a"]
    with pytest.raises(LaminaError, match="holds no labels"):
        normalise_labels(["", "  "])
    with pytest.raises(LaminaError, match="list of labels"):
        normalise_labels("cat")  # type: ignore[arg-type]


def test_templates() -> None:
    assert check_templates(["a photo of {}", "a {} scan", "a photo of {}"]) == (
        "a photo of {}",
        "a {} scan",
    )
    assert check_templates("a photo of {}") == ("a photo of {}",)
    for bad in ("a photo", "{} and {}"):
        with pytest.raises(LaminaError, match="exactly once"):
            check_templates([bad])
    with pytest.raises(LaminaError, match="no prompt templates"):
        check_templates([])
    # Braces in a label stay literal (no str.format).
    assert prompts("set {x}", ["a photo of {}"]) == ["a photo of set {x}"]


@pytest.mark.parametrize(
    ("char", "shown"),
    [("\x00", "\\x00"), ("\x1b", "\\x1b"), ("\x7f", "\\x7f"), ("\x85", "\\x85"),
     ("\x0b", "\\x0b"), ("\x1c", "\\x1c"), ("\u2028", "\\u2028")],
)  # fmt: skip
def test_control_characters_are_refused_with_line_and_character(
    tmp_path: Path, char: str, shown: str
) -> None:
    path = write(tmp_path, f"# labels\ncat\nred{char}[31m wine  # drinks\nrocket\n")
    with pytest.raises(LaminaError) as info:
        load_labels(path)
    message = str(info.value)
    assert str(path) in message and "line 3" in message and shown in message
    with pytest.raises(LaminaError, match="control character") as info:
        normalise_labels(["cat", f"red{char}wine"], where="--labels")
    assert shown in str(info.value) and "line" not in str(info.value).split("fix:")[0]


def test_a_tab_inside_a_label_is_a_space(tmp_path: Path) -> None:
    assert load_labels(write(tmp_path, "cup\tof coffee\n\tcat\t\n")) == ["cup of coffee", "cat"]
    assert normalise_labels(["cup\tof\tcoffee"]) == ["cup of coffee"]
