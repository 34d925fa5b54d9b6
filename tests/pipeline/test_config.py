"""The pipeline config: defaults, the TOML file, the command line, and refusals."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from lamina.core.errors import ConfigError
from lamina.pipeline.config import DEFAULT_STAGES, PipelineConfig, config_toml, resolve_config


def test_defaults_run_every_stage_but_sidecars_with_the_offline_model() -> None:
    config = resolve_config(None, {"root": ["photos"]})
    assert config.stages == list(DEFAULT_STAGES)
    assert "sidecars" not in config.stages
    assert config.embed_model() == "efficientnet_lite0:imagenet"
    assert config.tagger() == "offline"
    assert config.threshold_value() is None


def test_file_values_are_read_and_relative_paths_resolve_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    file = tmp_path / "conf" / "lamina.toml"
    file.write_text(
        'root = "../photos"\nlabels_file = "labels.txt"\ntopk = 3\nthreshold = 0.3\n'
        "max_images = 50\nbatch_images = 8\n"
    )
    config = resolve_config(file, {})
    assert Path(config.root[0]).resolve() == (tmp_path / "photos").resolve()
    assert Path(config.labels_file) == tmp_path / "conf" / "labels.txt"
    assert (config.topk, config.threshold_value(), config.max_images) == (3, 0.3, 50)
    assert config.batch_images == 8


def test_the_command_line_wins_over_the_file(tmp_path: Path) -> None:
    file = tmp_path / "lamina.toml"
    file.write_text("topk = 3\nmax_images = 10\n")
    config = resolve_config(file, {"max_images": 99, "topk": None})
    assert (config.topk, config.max_images) == (3, 99)


def test_photo_tagger_model_keys_make_an_open_clip_spec() -> None:
    config = PipelineConfig(model_name="ViT-B-32", pretrained="openai")
    assert config.embed_model() == "open_clip:ViT-B-32/openai"
    # A text-capable embedder scores the labels itself.
    assert config.tagger() == "open_clip:ViT-B-32/openai"


def test_model_name_without_pretrained_is_refused() -> None:
    with pytest.raises(ConfigError, match="pretrained"):
        PipelineConfig(model_name="ViT-B-32").embed_model()


def test_unknown_key_is_refused_with_the_nearest_name(tmp_path: Path) -> None:
    file = tmp_path / "lamina.toml"
    file.write_text("treshold = 0.2\n")
    with pytest.raises(ConfigError, match="unknown key 'treshold'") as err:
        resolve_config(file, {})
    assert "threshold" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('topk = "five"\n', "topk"),
        ('threshold = "high"\n', "threshold"),
        ('stages = ["scan", "paint"]\n', "paint"),
        ("topk = 0\n", "topk"),
        ("root = [\n", "not valid TOML"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, text: str, match: str) -> None:
    file = tmp_path / "lamina.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=match):
        resolve_config(file, {})


def test_missing_config_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as err:
        resolve_config(tmp_path / "nope.toml", {})
    assert "--print-config" in (err.value.hint or "")


def test_print_config_round_trips(tmp_path: Path) -> None:
    config = resolve_config(None, {"root": ["/data/photos"], "labels_file": "/l.txt", "topk": 7})
    text = config_toml(config)
    assert tomllib.loads(text)["topk"] == 7
    file = tmp_path / "lamina.toml"
    file.write_text(text)
    assert resolve_config(file, {}) == config
    # Every key carries its explanation.
    assert "# 0 = every image" in text


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_yaml_example_says_what_the_toml_one_says() -> None:
    """Photo-Tagger's config.yaml form: the same keys, the same resolved config."""
    assert resolve_config(EXAMPLES / "config.yaml", {}) == resolve_config(
        EXAMPLES / "lamina.toml", {}
    )


def test_yaml_values_paths_and_empty_keys(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    file = tmp_path / "conf" / "config.yml"
    file.write_text(
        "root:\n  - ../photos\n  - /data/scans\nlabels_file: labels.txt\ntopk: 3\n"
        "threshold: 0.3\ninvariant: true\nrun_dir:\ntemplates: ['a photo of {}', 'a {}']\n"
    )
    config = resolve_config(file, {"topk": 7})
    assert config.root == [str((tmp_path / "photos").absolute()), "/data/scans"]
    assert Path(config.labels_file) == tmp_path / "conf" / "labels.txt"
    assert (config.topk, config.threshold_value(), config.invariant) == (7, 0.3, True)
    assert config.run_dir == ""  # left empty: the default
    assert config.templates == ["a photo of {}", "a {}"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("treshold: 0.2\n", "unknown key 'treshold'"),
        ("- root\n- topk\n", "must be a mapping of keys to values, not list"),
        ("topk: [1\n", "is not valid YAML"),
        ("topk: five\n", "config key 'topk' must be int, not 'five'"),
        ("threshold: high\n", "threshold must be a number or 'auto'"),
    ],
)
def test_bad_yaml_is_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        resolve_config(file, {})
    if "treshold" in text:
        assert err.value.hint == "did you mean 'threshold'?"
