"""Label lists and prompt templates for tagging.

A label file is UTF-8 text, one label per line. Labels are stripped, lowercased and
de-duplicated (the first occurrence keeps its place). A line whose first non-blank
character is `#` is a comment, and so is the rest of a line from a `#` that follows a
blank (`cat   # the pet`): a `#` inside a word stays (`c#` is a label), so a label can
hold one. Blank lines are skipped. A file that is missing, empty, only comments or not
UTF-8 is refused with the file name (and the line of the first bad byte).

Labels are plain text: a label holding a control character (C0 or C1: NUL, ESC, DEL,
vertical tab, form feed, NEL, …, or the Unicode line and paragraph separators) is
refused, naming the file, the line and the character (as ``\\x1b``), since it would flow
raw into tags.csv and XMP sidecars. A tab is the one exception: it is blank space, and
like any run of blanks inside a label it becomes one space (``cup\\tof coffee`` is
``cup of coffee``). `normalise_labels` (the label lists of `lamina approve --labels` and
of the Python API) refuses the same characters. Lines end at ``\\n``, ``\\r\\n`` or
``\\r`` only.

Prompt templates turn a label into the text a CLIP-like model embeds: `a photo of {}` by
default; with several, each label's text vectors are averaged (the mean of the unit
vectors, renormalised: the usual prompt ensemble).

Example:
    >>> normalise_labels(["Cat", " cat ", "Cup of Coffee"])
    ['cat', 'cup of coffee']
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from lamina.core.errors import LaminaError

DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of {}",)
SLOT = "{}"
# A comment runs from a `#` at the start of the line or after a blank, to the line's end.
_COMMENT = re.compile(r"(^|\s)#.*$")
_LINE_END = re.compile(r"\r\n|\r|\n")
CONTROL_HINT = "labels are plain text: remove the character (a tab is taken as a space)"


def control_character(text: str) -> str | None:
    """The first control character of `text` (any but tab, plus U+2028 and U+2029),
    written as an escape (`\\x00`, `\\u2028`), or None when there is none.

    Example:
        >>> control_character("cat\\x1b[31m"), control_character("cup\\tof coffee")
        ('\\\\x1b', None)
    """
    for ch in text:
        if (unicodedata.category(ch) == "Cc" and ch != "\t") or ch in "\u2028\u2029":
            code = ord(ch)
            return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return None


def normalise_label(text: str) -> str:
    """One label as lamina stores it: stripped, lowercased, inner blanks collapsed.

    Example:
        >>> normalise_label("  Herbarium   Sheet ")
        'herbarium sheet'
    """
    return " ".join(text.split()).lower()


def normalise_labels(labels: Iterable[str], *, where: str = "the label list") -> list[str]:
    """Labels normalised (see `normalise_label`), blanks dropped, duplicates dropped with
    the first occurrence kept in place; a LaminaError when none is left.

    Example:
        >>> normalise_labels(["Rocket", "rocket", "", "cat"])
        ['rocket', 'cat']
    """
    if isinstance(labels, str):
        raise LaminaError(f"{where} must be a list of labels, not the string {labels!r}")
    seen: dict[str, None] = {}
    for label in labels:
        bad = control_character(str(label))
        if bad is not None:
            raise LaminaError(
                f"{where}: the label {str(label)!r} holds the control character {bad}",
                hint=CONTROL_HINT,
            )
        text = normalise_label(str(label))
        if text:
            seen.setdefault(text, None)
    if not seen:
        raise LaminaError(f"{where} holds no labels", hint="give at least one label")
    return list(seen)


def load_labels(path: str | Path) -> list[str]:
    """The labels of a label file (see the module docstring for the format).

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "labels.txt"
        >>> _ = p.write_text("# my labels\\nCat\\ncup of coffee  # drinks\\ncat\\n")
        >>> load_labels(p)
        ['cat', 'cup of coffee']
    """
    path = Path(path)
    hint = "a UTF-8 text file with one label per line, e.g. `cat` then `cup of coffee`"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LaminaError(f"the label file {path} does not exist", hint=hint) from None
    except IsADirectoryError:
        raise LaminaError(f"the label file {path} is a folder", hint=hint) from None
    except OSError as exc:
        raise LaminaError(f"cannot read the label file {path}: {exc.strerror}") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a BOM, as some Windows editors write
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LaminaError(
            f"the label file {path} is not UTF-8: line {line} has the byte "
            f"0x{data[exc.start]:02x} (byte offset {exc.start})",
            hint="save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 old.txt > labels.txt`)",
        ) from None
    if not text.strip():
        raise LaminaError(f"the label file {path} is empty", hint=hint)
    labels = []
    lines = _LINE_END.split(text.removesuffix("\n").removesuffix("\r"))
    for number, line in enumerate(lines, start=1):
        raw = _COMMENT.sub("", line)
        bad = control_character(raw)
        if bad is not None:
            raise LaminaError(
                f"the label file {path}: line {number} holds the control character {bad} "
                f"({raw.strip()!r})",
                hint=CONTROL_HINT,
            )
        label = normalise_label(raw)
        if label:
            labels.append(label)
    if not labels:
        raise LaminaError(
            f"the label file {path} has only comments and blank lines "
            f"({len(lines)} lines, no label)",
            hint="add one label per line; lines starting with # are comments",
        )
    return normalise_labels(labels, where=f"the label file {path}")


def check_templates(templates: Iterable[str]) -> tuple[str, ...]:
    """Prompt templates checked: each holds `{}` (where the label goes) exactly once;
    duplicates dropped, order kept; at least one.

    Example:
        >>> check_templates(["a photo of {}", "a picture of {}"])
        ('a photo of {}', 'a picture of {}')
    """
    if isinstance(templates, str):
        templates = (templates,)
    out: dict[str, None] = {}
    for template in templates:
        if template.count(SLOT) != 1:
            raise LaminaError(
                f"the prompt template {template!r} must hold {SLOT} exactly once",
                hint='e.g. --template "a photo of {}" (the label goes where {} is)',
            )
        out.setdefault(template, None)
    if not out:
        raise LaminaError("no prompt templates given", hint=f"e.g. {DEFAULT_TEMPLATES[0]!r}")
    return tuple(out)


def prompts(label: str, templates: Iterable[str]) -> list[str]:
    """The texts a model embeds for one label: each template with the label put in
    (by replacement, so braces in a label stay literal).

    Example:
        >>> prompts("cat", ["a photo of {}", "a {} in the wild"])
        ['a photo of cat', 'a cat in the wild']
    """
    return [template.replace(SLOT, label) for template in templates]
