"""Every command line the README and the `--help` Examples print, run as printed (sample
paths substituted) against a sample collection: none may end in a usage error, a
traceback or any other failure, except the few listed in `NEEDS_WHAT_THE_SAMPLE_LACKS`.

The lines are read from the README's shell code blocks and from each verb's help, so a
verb or an example added later is covered without touching this test. A tiny shell runs
them in order (state carries over: the README's `lamina run` makes the store the later
lines use): `&&`, `> FILE`, `| jq …`, `export NAME=VALUE` and `~` work as in bash.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import traceback
import webbrowser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from lamina.cli import main
from lamina.sample import package_photos

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


def readme_blocks(*langs: str) -> list[str]:
    """The README's code blocks in one of `langs` ("" = a block with no language)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    return [body for lang, body in blocks if lang in langs]


def readme_lines() -> list[str]:
    """The lines of the README's shell code blocks (continuations joined)."""
    lines = []
    for body in readme_blocks("", "bash", "sh", "shell"):
        lines += re.sub(r"\\\n\s*", " ", body).splitlines()
    return [line.strip() for line in lines if line.strip()]


def help_lines() -> list[str]:
    """The lines under `Example:` in `lamina --help` and every verb's help."""
    lines = []
    for command in (main, *main.commands.values()):
        example = (command.help or "").partition("Example:")[2]
        lines += re.sub(r"\\\n\s*", " ", example).splitlines()
    return [line.strip() for line in lines if line.strip()]


def documented_lines() -> list[str]:
    """README lines first (their order builds the store), then the help examples; each
    distinct line once. Comments and spacing do not make two lines distinct."""
    seen: dict[str, str] = {}
    for line in readme_lines() + help_lines():
        seen.setdefault(" ".join(_words(line)), line)
    return list(seen.values())


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


def test_every_documented_command_line_works_as_printed(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One worker: the sample is a few images, and process pools would only slow it.
    monkeypatch.setattr("lamina.executors.local.default_workers", lambda: 1)
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url))
    # `lamina app` serves until stopped: the lines that start it only record what it serves.
    served: list[dict[str, Any]] = []
    monkeypatch.setattr("lamina.review.server.serve", lambda store, **kw: served.append(kw))
    monkeypatch.chdir(world["work"])
    shell = Shell(world)
    failures, expected = [], []
    for line in documented_lines():
        first = _words(line)[0]
        if first in NOT_LAMINA:
            continue
        if "20261122T101530Z-ab12cd" in line:  # the run id placeholder: a real one
            shell.substitutes["20261122T101530Z-ab12cd"] = _a_run_id(shell)
        code, out = shell.run(line)
        printed = _printed(line)
        if printed in NEEDS_WHAT_THE_SAMPLE_LACKS:
            why, message = NEEDS_WHAT_THE_SAMPLE_LACKS[printed]
            expected.append(printed)
            if code != 2 or message not in out or "Traceback" in out:
                failures.append(f"{line}\n  expected exit 2 with {message!r} ({why})\n{out}")
        elif code != 0:
            failures.append(f"{line}\n  exit {code}\n{out}")
    # The README's Python, against the same store.
    monkeypatch.setenv("HOME", str(world["home"]))
    for block in readme_blocks("python"):
        try:
            exec(compile(block, "README.md", "exec"), {})
        except Exception:
            failures.append(f"{block}\n{traceback.format_exc()}")
    assert not failures, "\n\n".join(failures)
    assert sorted(expected) == sorted(NEEDS_WHAT_THE_SAMPLE_LACKS)
    assert opened and opened[0].endswith("/report/index.html")  # `lamina report --open`
    assert {"host": "127.0.0.1", "port": 8800, "open_browser": True} in served  # `lamina app`


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
