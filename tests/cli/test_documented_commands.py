"""Every command line the README and the `--help` Examples print, run as printed (sample
paths substituted) against a sample collection: none may end in a usage error, a
traceback or any other failure, except the few listed in `NEEDS_WHAT_THE_SAMPLE_LACKS`.
The README's Python blocks run too.

The lines are read from the README's code blocks and from each verb's help, so a verb or
an example added later is covered without touching this test. A tiny shell runs them
(`&&`, `> FILE`, `| jq …`, `export NAME=VALUE` and `~` work as in bash) in *parts*, one
test each, so that pytest-xdist spreads them over its workers:

* the README's first `lamina run` builds the store every part starts from, once per
  worker; each part runs on a fresh copy of it, at the same paths;
* a README section is a part (its lines in order, state carrying over as in bash);
* a verb's help examples run after the README section that first uses the verb (its
  store has what they read), unless `HELP_PART` says otherwise;
* each line sees the `export`s printed before it, as it would reading the README top
  to bottom.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import subprocess
import traceback
import webbrowser
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lamina.cli import main
from lamina.sample import package_photos
from lamina.tagging import offline

ROOT = Path(__file__).resolve().parents[2]
# First words of README lines that are not lamina commands: checked by `make demo` / CI.
NOT_LAMINA = ("make", "source")
# The one model the sample has weights for, offline.
MODEL = "efficientnet_lite0:imagenet"
CLIP = "open_clip:ViT-B-32/laion2b_s34b_b79k"
NO_CLIP = "no CLIP weights can be had offline (only EfficientNet-Lite0's ship in a package)"
NOT_CACHED = "the weights of open_clip ViT-B-32/laion2b_s34b_b79k are not in this machine's cache"
NOT_EMBEDDED = f"no embeddings of model '{CLIP}' in the store"
NO_VECTORS = f"no image vectors of {CLIP} in the store"
# Lines that legitimately fail on the sample, as printed: the line -> (why, what it says).
NEEDS_WHAT_THE_SAMPLE_LACKS: dict[str, tuple[str, str]] = {
    f"lamina embed -m {CLIP} -m timm:vit_small_patch14_dinov2.lvd142m": (NO_CLIP, NOT_CACHED),
    f"lamina embed --model default --model {CLIP}": (NO_CLIP, NOT_CACHED),
    "lamina embed --model timm:vit_small_patch14_dinov2.lvd142m@/models/dinov2_s.safetensors": (
        "the example names a DINOv2 checkpoint of the user's; none ships offline",
        "no checkpoint file at /models/dinov2_s.safetensors",
    ),
    f'lamina search "a handwritten label" --model {CLIP}': (NO_CLIP, NOT_EMBEDDED),
    f'lamina search "a dog on a beach" --model {CLIP} --json': (NO_CLIP, NOT_EMBEDDED),
    'lamina search "a red car" -k 20 --offline': (
        "the newest embedded model is the offline EfficientNet-Lite0, which embeds no text",
        f"model '{MODEL}' embeds images only, so it cannot search by text",
    ),
    f"lamina cluster --compare {MODEL} open_clip:ViT-B-32/openai": (
        NO_CLIP,
        "no embeddings of model 'open_clip:ViT-B-32/openai'",
    ),
    f'lamina tag --labels labels.txt --model {CLIP} --template "a photo of {{}}" '
    '--template "a picture of {}"': (NO_CLIP, NO_VECTORS),
    f'lamina tag --labels labels.txt --model {CLIP} --template "a photo of {{}}" '
    '--template "a scan of {}" --threshold 0.27 --json': (NO_CLIP, NO_VECTORS),
    "lamina caption --model hf:Salesforce/blip-image-captioning-base --max 50 --dry-run": (
        "no caption model ships in a package; the tests save a tiny one of their own",
        "the caption model Salesforce/blip-image-captioning-base is not in this machine's HF",
    ),
    'lamina caption -m hf:/models/blip --prompt "a picture of" --where "modality = \'photo\'"': (
        "the example names a model folder of the user's",
        "no model folder at /models/blip",
    ),
    "lamina depth -m hf:/models/dpt-hybrid-midas --max 20": (
        "the example names a model folder of the user's",
        "no model folder at /models/dpt-hybrid-midas",
    ),
    "lamina agreement --json": (
        "the sample has no captions (no caption model ships in a package)",
        "the comparison needs the captions table",
    ),
}


SHELL = ("", "bash", "sh", "shell")
# Where a verb's help examples run when the part of the README section that first uses the
# verb is not the place: the section (the start of its heading) whose store they read, or
# OWN, a part of their own.
OWN = "its own part"
HELP_PART: dict[str, str] = {
    "export": "Collections with a shape",  # `--per item` needs the layout written there
    "import-approvals": "Tags from your label list",  # reads the tags.csv exported there
    # A full `lamina run` twice, every motif recomputed: beside their sections they would
    # make the slowest part slower still.
    "run": OWN,
    "motifs": OWN,
}
# The part of the help examples of verbs the README does not show.
UNSHOWN = "verbs the README does not show"


@dataclass(frozen=True)
class Step:
    """One documented thing to run: a command line, or a README Python block. `index` is
    its place reading the README top to bottom, then every help; `where` the README
    section ("## " heading) or `lamina VERB --help`; `verb` the help's verb."""

    index: int
    text: str
    where: str
    verb: str | None = None
    python: bool = False


def readme_code() -> list[tuple[str, str, str]]:
    """(the "## " heading above it, language, body) of each README code block, in order."""
    out: list[tuple[str, str, str]] = []
    heading, lang, body, inside = "", "", [], False
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines(keepends=True):
        if inside and line.startswith("```"):
            out.append((heading, lang, "".join(body)))
            inside = False
        elif inside:
            body.append(line)
        elif line.startswith("```"):
            lang, body, inside = line[3:].strip(), [], True
        elif line.startswith("## "):
            heading = line[3:].strip()
    return out


def readme_blocks(*langs: str) -> list[str]:
    """The README's code blocks in one of `langs` ("" = a block with no language)."""
    return [body for _, lang, body in readme_code() if lang in langs]


def _lines(text: str) -> list[str]:
    """The non-empty lines of `text`, continuations joined."""
    return [x.strip() for x in re.sub(r"\\\n\s*", " ", text).splitlines() if x.strip()]


def readme_lines() -> list[str]:
    """The lines of the README's shell code blocks (continuations joined)."""
    return [line for body in readme_blocks(*SHELL) for line in _lines(body)]


def help_examples() -> list[tuple[str, list[str]]]:
    """(verb, the lines under `Example:`) of `lamina --help` and every verb's help; the
    verb of `lamina --help` is that of its first line."""
    out = []
    for command in dict.fromkeys((main, *main.commands.values())):  # an alias once
        lines = _lines((command.help or "").partition("Example:")[2])
        verb = _verb(lines[0]) if command is main and lines else command.name
        out.append((verb or "", lines))
    return out


def help_lines() -> list[str]:
    """The lines under `Example:` in `lamina --help` and every verb's help."""
    return [line for _, lines in help_examples() for line in lines]


def _verb(line: str) -> str | None:
    found = re.match(r"lamina( --store \S+)? ([a-z][a-z-]*)", line)
    return found.group(2) if found else None


def documented_steps() -> list[Step]:
    """README lines and Python blocks in order, then the help examples; each distinct line
    once (comments and spacing do not make two lines distinct)."""
    seen: set[str] = set()
    steps: list[Step] = []

    def add(line: str, where: str, verb: str | None = None) -> None:
        key = " ".join(_words(line))
        if key not in seen:
            seen.add(key)
            steps.append(Step(len(steps), line, where, verb))

    for heading, lang, body in readme_code():
        if lang == "python":
            steps.append(Step(len(steps), body, heading, python=True))
        elif lang in SHELL:
            for line in _lines(body):
                add(line, heading)
    for verb, lines in help_examples():
        for line in lines:
            add(line, f"lamina {verb} --help", verb)
    return steps


def documented_lines() -> list[str]:
    """README lines first, then the help examples; each distinct line once."""
    return [s.text for s in documented_steps() if not s.python]


def _runs(step: Step) -> bool:
    return step.python or _words(step.text)[0] not in NOT_LAMINA


def documented_parts() -> tuple[Step, dict[str, list[Step]]]:
    """The README's first lamina line (it builds the store every part starts from) and
    the parts: name -> steps, in order."""
    steps = [s for s in documented_steps() if _runs(s)]
    base = next(s for s in steps if not s.python and s.verb is None and _verb(s.text))
    sections = list(dict.fromkeys(s.where for s in steps if s.verb is None))
    first: dict[str, str] = {}  # verb -> the README section that first runs it
    for s in steps:
        if s.verb is None and not s.python and (verb := _verb(s.text)):
            first.setdefault(verb, s.where)
    parts: dict[str, list[Step]] = {}
    for s in steps:
        if s is base:
            continue
        part = s.where
        if s.verb is not None:
            wanted = HELP_PART.get(s.verb)
            if wanted == OWN:
                part = s.where
            elif wanted is not None:
                named = [x for x in sections if x.startswith(wanted)]
                assert len(named) == 1, f"HELP_PART: no one README section {wanted!r}"
                part = named[0]
            else:
                part = first.get(s.verb, UNSHOWN)
        parts.setdefault(part, []).append(s)
    return base, parts


def _words(line: str) -> list[str]:
    """Shell words of `line`: quotes removed, `#` comments dropped, and `&&`, `|`, `>`
    as words of their own."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="&|>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _printed(line: str) -> str:
    """A line as the table of expected failures names it: its comment and extra spaces
    dropped."""
    code = line.partition("  #")[0] if "  #" in line else line
    return re.sub(r"\s+", " ", code).strip()


BASE, PARTS = documented_parts()


def _slug(name: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", name.lower())[:4])


def _photo(path: Path, pixels: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A home folder with ~/Pictures (the names the examples use: photos/cat.jpg,
    cats/a.jpg, 2024/), ~/Downloads/found.jpg, a second source for /mnt/archive/scans, and a
    working folder with the files the examples read (labels.txt, labels.csv, licenses.csv,
    folders.csv, listings, per-plate manifests, config.yaml)."""
    base = tmp_path_factory.mktemp("docs")
    home, work = base / "home", base / "work"
    photos = package_photos()
    pictures = home / "Pictures"
    _photo(pictures / "photos" / "cat.jpg", photos["chelsea"])
    _photo(pictures / "cats" / "a.jpg", photos["chelsea"][::2, ::2])
    for name in ("coffee", "rocket", "astronaut", "motorcycle_left"):
        _photo(pictures / "things" / f"{name}.jpg", photos[name])
    data = (pictures / "photos" / "cat.jpg").read_bytes()
    (pictures / "things" / "cat_copy.jpg").write_bytes(data)
    (pictures / "things" / "cut.jpg").write_bytes(data[: len(data) // 3])
    (pictures / "things" / "notes.txt").write_text("not an image\n")
    _photo(pictures / "2024" / "rocket_crop.jpg", photos["rocket"][40:, 60:])
    # Two classes of three in photos/<topic>/, as in the sample (README: train a classifier).
    for topic, names in (("textures", ("brick", "grass", "gravel")),
                         ("science", ("cell", "retina", "microaneurysms"))):  # fmt: skip
        for name in names:
            _photo(pictures / "photos" / topic / f"{name}.jpg", photos[name])
    _photo(home / "Downloads" / "found.jpg", photos["chelsea"][20:, 30:])
    scans = base / "mnt" / "archive" / "scans"
    _photo(scans / "page1.jpg", photos["camera"])
    work.mkdir()
    shutil.copy(ROOT / "examples" / "labels.txt", work / "labels.txt")
    (work / "labels.csv").write_text("name,label\ncat.jpg,cat\na.jpg,kitten\n")
    (work / "licenses.csv").write_text("rel_path,license\nphotos/cat.jpg,CC-BY\n")
    (work / "folders.csv").write_text("folder,licence\nphotos,CC-BY\nphotos/science,CC0\n")
    listing = "path,size\nD:\\Pictures\\photos\\cat.jpg,1\nD:\\Pictures\\new.jpg,2\n"
    (work / "other-disk.csv").write_text(listing)
    (work / "bucket-listing.csv").write_text(listing.replace("D:\\", "s3://bucket/"))
    for plate in ("p1", "p2"):
        (work / "plates" / plate).mkdir(parents=True)
        (work / "plates" / plate / "manifest.json").write_text(json.dumps({"plate": plate}))
    (work / "config.yaml").write_text("root: ~/Pictures\nlabels_file: labels.txt\ntopk: 3\n")
    substitutes = {
        "/mnt/archive/scans": str(scans),
        "/tmp/xmp": str(base / "xmp"),
        "/tmp/my-report": str(base / "my-report"),
        # The README's training section runs on `make demo`'s store: here, the README's.
        "demo/store": str(home / "pictures-store"),
        # A placeholder for two embedding models: the sample has one.
        "MODEL_A": MODEL,
        "MODEL_B": MODEL,
    }
    import matplotlib

    return {
        "root": base,
        "home": home,
        "work": work,
        "substitutes": substitutes,
        "mplconfigdir": matplotlib.get_configdir(),  # under the real HOME, before the swap
    }


class Shell:
    """Runs documented lines in process, the way bash would run them."""

    def __init__(self, world: dict[str, Any]) -> None:
        self.home: Path = world["home"]
        self.work: Path = world["work"]
        self.substitutes: dict[str, str] = dict(world["substitutes"])
        self.env: dict[str, str] = {"HOME": str(self.home), "HF_HUB_OFFLINE": "1"}
        # matplotlib would build its font cache anew under the new HOME: keep the real one.
        self.env["MPLCONFIGDIR"] = world["mplconfigdir"]
        self.runner = CliRunner()
        self.opened: list[str] = []  # what `webbrowser.open` was asked to open
        self.served: list[dict[str, Any]] = []  # how `lamina app` would have served

    def expand(self, word: str) -> str:
        name, eq, value = word.partition("=")
        if eq and name.isidentifier() and value.startswith("~"):
            return f"{name}={self.expand(value)}"  # NAME=~/x, as in an assignment
        if word == "~" or word.startswith("~/"):
            word = str(self.home) + word[1:]
        return self.substitutes.get(word, word)

    def run(self, line: str) -> tuple[int, str]:
        """(exit code, output) of the line; stops at the first failing `&&` part."""
        words = [self.expand(w) for w in _words(line)]
        code, out = 0, ""
        while words and code == 0:
            part = words[: words.index("&&")] if "&&" in words else words
            words = words[len(part) + 1 :]
            code, text = self._one(part)
            out += text
        return code, out

    def _one(self, words: list[str]) -> tuple[int, str]:
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            self.env[name] = value
            return 0, ""
        assert words[0] == "lamina", f"not a lamina command: {words}"
        redirect = pipe = None
        if ">" in words:
            redirect = self.work / words[words.index(">") + 1]
            words = words[: words.index(">")]
        if "|" in words:
            pipe = words[words.index("|") + 1 :]
            words = words[: words.index("|")]
        for flag in ("-o", "--output"):
            # Each line is checked as if typed once: an output an earlier line wrote (the
            # README and a help both write problems.csv) is not in the way.
            if flag in words[:-1] and not Path(words[words.index(flag) + 1]).is_absolute():
                target = self.work / words[words.index(flag) + 1]
                if target.is_file():
                    target.unlink()
        result = self.runner.invoke(main, words[1:], env=self.env)
        out = result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            out += "".join(traceback.format_exception(result.exception))
            return 99, out
        if redirect is not None and result.exit_code == 0:
            redirect.write_text(result.stdout)
        if pipe is not None and result.exit_code == 0:
            return self._pipe(pipe, result.stdout)
        return result.exit_code, out

    def _pipe(self, words: list[str], text: str) -> tuple[int, str]:
        assert words[0] == "jq", f"only `| jq` is understood: {words}"
        if shutil.which("jq") is None:  # no jq here: at least the JSON must parse
            json.loads(text)
            return 0, text
        done = subprocess.run(words, input=text, capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip() == "null":
            return 1, f"jq found nothing at {words[1:]}:\n{text}"
        return done.returncode, done.stdout + done.stderr


def test_the_documented_lines_are_found() -> None:
    lines = [_printed(line) for line in documented_lines()]
    assert "lamina scan ~/Pictures --store ~/pictures-store" in lines
    assert "lamina status --json | jq .files.by_status" in lines
    for verb in {c.name for c in main.commands.values()}:  # each in some example (not aliases)
        assert any(re.search(rf"\blamina( --store \S+)? {verb}\b", x) for x in lines), verb
    assert set(NEEDS_WHAT_THE_SAMPLE_LACKS) <= set(lines), "a listed line is no longer printed"


def test_the_parts_hold_every_documented_line_once() -> None:
    steps = [s for s in documented_steps() if _runs(s)]
    in_parts = [s for part in PARTS.values() for s in part]
    assert sorted([BASE, *in_parts], key=lambda s: s.index) == steps
    assert BASE.text.startswith("lamina --store ~/pictures-store run ~/Pictures")
    for part in PARTS.values():  # each part in the order the lines are printed
        assert [s.index for s in part] == sorted(s.index for s in part)
    assert len({_slug(name) for name in PARTS}) == len(PARTS)


@dataclass
class Built:
    """The world after the base line, and a copy of it to start each part from."""

    world: dict[str, Any]
    pristine: Path

    def fresh(self) -> dict[str, Any]:
        """The world as the base line left it, at the same paths (the store records its
        sources' absolute paths, so a copy elsewhere would not do)."""
        root = self.world["root"]
        shutil.rmtree(root)
        shutil.copytree(self.pristine, root, symlinks=True)
        return self.world


# MiniLM vectors of the texts the offline tagger embedded so far in this worker (see
# `_no_side_effects`).
_TEXT_VECTORS: dict[str, np.ndarray] = {}
_EMBED_TEXT = offline.embed_text  # the real one (the parts patch the module's name)


def _embed_text_once(texts: list[str]) -> np.ndarray:
    """`lamina.tagging.offline.embed_text`, each text embedded once per worker."""
    missing = [t for t in dict.fromkeys(texts) if t not in _TEXT_VECTORS]
    if missing:
        _TEXT_VECTORS.update(zip(missing, _EMBED_TEXT(missing), strict=True))
    if not texts:
        return _EMBED_TEXT(texts)
    return np.stack([_TEXT_VECTORS[t] for t in texts])


@contextlib.contextmanager
def _no_side_effects(mp: pytest.MonkeyPatch, world: dict[str, Any]) -> Iterator[Shell]:
    """A Shell in the working folder, with one executor worker, and browsers and the app
    server recorded (`shell.opened`, `shell.served`) instead of started (torch's threads:
    each xdist worker's share of the cores, see tests/conftest.py)."""
    # One worker: the sample is a few images, and process pools would only slow it.
    mp.setattr("lamina.executors.local.default_workers", lambda: 1)
    # chunk_plan imports the name itself, so the executor's patch alone does not reach it.
    mp.setattr("lamina.core.chunk_plan.default_workers", lambda: 1)
    # The offline tagger embeds ImageNet's 1000 class names with MiniLM into each new
    # store's text cache (~10 s): every part starts from a fresh store, and the vectors
    # are the same each time, so a worker computes them once. Each store's cache is still
    # written and read as the line would.
    mp.setattr("lamina.tagging.offline.embed_text", _embed_text_once)
    shell = Shell(world)
    mp.setattr(webbrowser, "open", lambda url, *a, **k: shell.opened.append(url))
    # `lamina app` serves until stopped: the lines that start it only record what it serves.
    mp.setattr("lamina.review.server.serve", lambda store, **kw: shell.served.append(kw))
    mp.chdir(world["work"])
    yield shell


@pytest.fixture(scope="module")
def built(world: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The README's first `lamina run`, once per worker (module), kept as a copy."""
    with pytest.MonkeyPatch.context() as mp, _no_side_effects(mp, world) as shell:
        code, out = shell.run(BASE.text)
    assert code == 0, f"{BASE.text}\n  exit {code}\n{out}"
    pristine = tmp_path_factory.mktemp("docs-built") / "root"
    shutil.copytree(world["root"], pristine, symlinks=True)
    return Built(world, pristine)


# What a line does beyond its exit code: the page it opens, what it serves.
OPENS = {"lamina report --open": "/report/index.html"}
SERVES = {
    "lamina app --port 8800 --open": {"host": "127.0.0.1", "port": 8800, "open_browser": True}
}


@pytest.mark.parametrize("part", list(PARTS), ids=[_slug(name) for name in PARTS])
def test_every_documented_command_line_works_as_printed(
    part: str, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = built.fresh()
    exports = [s for s in documented_steps() if not s.python and s.text.startswith("export ")]
    failures = []
    with _no_side_effects(monkeypatch, world) as shell:
        for step in PARTS[part]:
            for export in exports:  # as bash has them, reading the README down to here
                if export.index < step.index:
                    shell.run(export.text)
            if step.python:  # the README's Python, against the same store
                monkeypatch.setenv("HOME", str(world["home"]))
            failures += _check(shell, step)
    assert not failures, "\n\n".join(failures)


def _check(shell: Shell, step: Step) -> list[str]:
    """What is wrong with running `step` (nothing: [])."""
    if step.python:
        try:
            exec(compile(step.text, "README.md", "exec"), {})
        except Exception:
            return [f"{step.text}\n{traceback.format_exc()}"]
        return []
    line = step.text
    if "20261122T101530Z-ab12cd" in line:  # the run id placeholder: a real one
        shell.substitutes["20261122T101530Z-ab12cd"] = _a_run_id(shell)
    opened, served = len(shell.opened), len(shell.served)
    code, out = shell.run(line)
    printed = _printed(line)
    if printed in NEEDS_WHAT_THE_SAMPLE_LACKS:
        why, message = NEEDS_WHAT_THE_SAMPLE_LACKS[printed]
        if code != 2 or message not in out or "Traceback" in out:
            return [f"{line}\n  expected exit 2 with {message!r} ({why})\n{out}"]
    elif code != 0:
        return [f"{line}\n  exit {code}\n{out}"]
    if printed in OPENS and not shell.opened[opened:][0].endswith(OPENS[printed]):
        return [f"{line}\n  opened {shell.opened[opened:]}, not {OPENS[printed]}"]
    if printed in SERVES and SERVES[printed] not in shell.served[served:]:
        return [f"{line}\n  served {shell.served[served:]}, not {SERVES[printed]}"]
    return []


def _a_run_id(shell: Shell) -> str:
    code, out = shell.run("lamina runs --json")
    assert code == 0, out
    return json.loads(out)[-1]["run_id"]


def test_a_failing_line_is_caught(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell reports what the test must catch: an unknown option, a failing part of
    `&&`, a traceback."""
    shell = Shell(world)
    code, out = shell.run("lamina status --no-such-option")
    assert code == 2 and "No such option" in out
    code, _ = shell.run("lamina --version && lamina scan")  # `scan` needs a source
    assert code == 2

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("lamina.core.store.Store.open", broken)
    code, out = shell.run("lamina status --store ~/nowhere")
    assert code == 99 and "Traceback" in out and "RuntimeError: a bug" in out
