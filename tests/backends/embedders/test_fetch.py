"""Weights fetched on first use, against a fake hub on 127.0.0.1 (`fake_hub.py`) that the
real huggingface_hub download code talks to: size first, into the HF cache, once; offline
refusals; dropped connections resumed; interrupted and corrupt downloads never loaded;
the default model's choice, which never hangs."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from lamina.backends.embedders import fetch, load_embedder
from lamina.backends.embedders.fetch import (
    CLIP_DEFAULT,
    CLIP_DEFAULT_REPO,
    OPEN_CLIP_FILES,
    choose_default,
    resolve_model,
)
from lamina.core.errors import ConfigError, LaminaError
from tests.backends.embedders.fake_hub import Hub, add_folder, serve, silent_server
from tests.backends.embedders.tiny_models import (
    TINY_CLIP,
    photos,
    tiny_hf_clip,
    tiny_open_clip,
    tiny_timm,
)

TIMM_REPO = "timm/test_vit.r160_in1k"  # timm's own hub id for its test model


@pytest.fixture
def online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads allowed (the suite is offline otherwise), into an empty HF cache."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    choose_default.cache_clear()
    yield cache
    choose_default.cache_clear()


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return tiny_timm(tmp_path_factory.mktemp("timm")).read_bytes()


def _hub(monkeypatch: pytest.MonkeyPatch, hub: Hub) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)


def _gets(hub: Hub, name: str) -> list[str | None]:
    """The Range header of each GET of a file."""
    return [r for m, p, r in hub.requests if m == "GET" and p.endswith("/" + name)]


def test_timm_weights_download_once_with_their_size_first(
    online: Path,
    timm_weights: bytes,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serve(Hub({TIMM_REPO: {"model.safetensors": timm_weights}})) as hub:
        _hub(monkeypatch, hub)
        with caplog.at_level(logging.INFO, logger="lamina"):
            e = load_embedder("timm:test_vit.r160_in1k", device="cpu")
        # The size was asked (HEAD) and said before the file was fetched (GET).
        methods = [m for m, _, _ in hub.requests]
        assert methods.index("HEAD") < methods.index("GET")
        said = [r.getMessage() for r in caplog.records if "downloading" in r.getMessage()]
        size = fetch.human_bytes(len(timm_weights))
        assert len(said) == 1 and f"timm test_vit.r160_in1k: {size} in 1 file(s)" in said[0]
        assert f"{hub.url}/{TIMM_REPO}" in said[0] and str(online) in said[0]
        info = e.describe()["weights"]
        assert info["source"] == "download"
        assert info["sha256"] == Hub.sha256(timm_weights)
        # In the hub cache's own layout, where timm and huggingface_hub look.
        assert info["file"].startswith(str(online / "models--timm--test_vit.r160_in1k"))
        assert e.embed_images([photos()["coffee"]]).shape == (1, 64)
        # The second time it is a cached file: no request at all.
        before = len(hub.requests)
        again = load_embedder("timm:test_vit.r160_in1k", device="cpu")
        assert len(hub.requests) == before
        assert again.describe()["weights"]["source"] == "cache"


def test_offline_never_downloads_and_says_how_to_get_the_weights(
    online: Path, timm_weights: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(Hub({TIMM_REPO: {"model.safetensors": timm_weights}})) as hub:
        _hub(monkeypatch, hub)
        with pytest.raises(LaminaError, match="never downloads") as info:
            load_embedder("timm:test_vit.r160_in1k", offline=True)
        assert "drop --offline" in str(info.value)
        assert "--model timm:test_vit.r160_in1k@" in str(info.value)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the standard switch does the same
        with pytest.raises(LaminaError, match="never downloads"):
            load_embedder("timm:test_vit.r160_in1k")
        assert hub.requests == []


def test_a_dropped_connection_resumes_where_it_stopped(
    online: Path, timm_weights: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(time, "sleep", lambda s: None)  # huggingface_hub waits 1 s to retry
    # It writes what it received in 10 MB pieces; in 512-byte ones here, so 1000 bytes
    # then a cut leave 512 written, and the retry asks for the rest.
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 512)
    hub = Hub({TIMM_REPO: {"model.safetensors": timm_weights}}, cut={"model.safetensors": 1000})
    hub.cuts_left = 1
    with serve(hub):
        _hub(monkeypatch, hub)
        e = load_embedder("timm:test_vit.r160_in1k", device="cpu")
    assert _gets(hub, "model.safetensors") == [None, "bytes=512-"]
    assert e.describe()["weights"]["sha256"] == Hub.sha256(timm_weights)


def test_an_interrupted_download_leaves_nothing_a_load_could_read(
    online: Path, timm_weights: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "sleep", lambda s: None)
    hub = Hub({TIMM_REPO: {"model.safetensors": timm_weights}}, cut={"model.safetensors": 1000})
    hub.cuts_left = 100  # every try is cut: huggingface_hub gives up
    with serve(hub):
        _hub(monkeypatch, hub)
        with pytest.raises(LaminaError, match=r"download of model\.safetensors .* failed") as info:
            load_embedder("timm:test_vit.r160_in1k", device="cpu")
        assert "nothing partial was kept" in str(info.value)
        repo = online / "models--timm--test_vit.r160_in1k"
        assert [p for p in repo.rglob("*") if p.is_file() and p.parent.name == "blobs"] == []
        assert not (repo / "snapshots").exists() or not any((repo / "snapshots").rglob("*.*"))
        # Offline now, the half download is not mistaken for the weights.
        with pytest.raises(LaminaError, match="never downloads"):
            load_embedder("timm:test_vit.r160_in1k", offline=True)
        # A process killed mid-download leaves its own temporary file; the next download
        # neither reads nor resumes it: it fetches the file whole.
        blobs = repo / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        stale = blobs / f"{Hub.sha256(timm_weights)}.0badc0de.incomplete"
        stale.write_bytes(b"\0" * 1000)
        hub.cuts_left = 0
        e = load_embedder("timm:test_vit.r160_in1k", device="cpu")
    assert e.describe()["weights"]["sha256"] == Hub.sha256(timm_weights)
    assert _gets(hub, "model.safetensors")[-1] is None  # from the first byte


def test_corrupt_bytes_are_deleted_not_loaded(
    online: Path, timm_weights: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = Hub({TIMM_REPO: {"model.safetensors": timm_weights}}, corrupt={"model.safetensors"})
    with serve(hub):
        _hub(monkeypatch, hub)
        with pytest.raises(LaminaError, match="is corrupt: SHA-256"):
            load_embedder("timm:test_vit.r160_in1k", device="cpu")
        files = [p for p in online.rglob("*") if p.is_file() or p.is_symlink()]
        assert not [p for p in files if p.name == "model.safetensors" or "blobs" in p.parts]
        hub.corrupt.clear()
        e = load_embedder("timm:test_vit.r160_in1k", device="cpu")
    assert e.describe()["weights"]["sha256"] == Hub.sha256(timm_weights)


def test_unreachable_hub_is_a_clear_error(online: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(Hub({})) as hub:
        port_url = hub.url
    monkeypatch.setenv("HF_ENDPOINT", port_url)  # nothing listens there any more
    with pytest.raises(LaminaError, match=f"could not reach {port_url}") as info:
        load_embedder("timm:test_vit.r160_in1k")
    assert "--offline stops lamina from trying" in str(info.value)


def test_open_clip_tag_downloads_safetensors_first(
    online: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import open_clip
    import torch
    from safetensors.torch import save_file

    tiny_open_clip(tmp_path / "clip")  # registers the tiny architecture
    torch.manual_seed(3)
    model = open_clip.create_model(TINY_CLIP)
    weights = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    tags = {"tiny": open_clip.pretrained._pcfg(hf_hub="lamina-test/tiny-clip/")}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_CLIP, tags)
    with serve(Hub({"lamina-test/tiny-clip": {weights.name: weights.read_bytes()}})) as hub:
        _hub(monkeypatch, hub)
        e = load_embedder(f"open_clip:{TINY_CLIP}/tiny", device="cpu")
    assert e.describe()["weights"]["source"] == "download"
    assert e.can_embed_text and e.embed_texts(["a cat"]).shape == (1, 16)
    with torch.inference_mode():
        x = torch.from_numpy(np.stack([e.preprocess(photos()["rocket"])]))
        expected = torch.nn.functional.normalize(model.eval().encode_image(x), dim=-1).numpy()
    np.testing.assert_allclose(e.embed_images([photos()["rocket"]]), expected, atol=1e-5)


def test_hf_repo_downloads_configs_tokenizer_and_weights(
    online: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tiny_hf_clip(tmp_path / "clip")
    (folder / "tf_model.h5").write_bytes(b"not for torch")  # another framework: left out
    hub = Hub({})
    add_folder(hub, "lamina-test/tiny-clip-hf", folder)
    with serve(hub):
        _hub(monkeypatch, hub)
        e = load_embedder("hf:lamina-test/tiny-clip-hf", device="cpu")
    local = load_embedder(f"hf:{folder}", device="cpu")
    cat = photos()["chelsea"]
    np.testing.assert_allclose(e.embed_images([cat]), local.embed_images([cat]), atol=1e-6)
    np.testing.assert_allclose(e.embed_texts(["cat"]), local.embed_texts(["cat"]), atol=1e-6)
    fetched = {p.rsplit("/", 1)[-1] for m, p, _ in hub.requests if m == "GET" and "resolve" in p}
    assert "model.safetensors" in fetched and "tokenizer_config.json" in fetched
    assert "tf_model.h5" not in fetched


def test_default_is_a_cached_clip(online: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = "0" * 40
    repo = online / f"models--{CLIP_DEFAULT_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / OPEN_CLIP_FILES[0]).write_bytes(b"weights")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never asked
    choice = choose_default(False)
    assert choice.spec == CLIP_DEFAULT and "weights in the HF cache" in choice.reason
    assert choose_default(True).spec == CLIP_DEFAULT  # offline, a cached one is as good


def test_default_is_a_downloadable_clip(online: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(Hub({CLIP_DEFAULT_REPO: {OPEN_CLIP_FILES[0]: b"x" * 2_500_000}})) as hub:
        _hub(monkeypatch, hub)
        choice = choose_default(False)
        assert [m for m, _, _ in hub.requests] == ["HEAD"]  # a probe, no download
    assert choice.spec == CLIP_DEFAULT
    assert "(2.5 MB) download once into" in choice.reason
    assert choice.line().startswith(f"model: {CLIP_DEFAULT} (text-capable CLIP")
    assert resolve_model("auto") == resolve_model(None) == CLIP_DEFAULT


def test_default_falls_back_offline_without_hanging(
    online: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "PROBE_TIMEOUT_S", 0.5)
    with silent_server() as url:  # accepts the connection, never answers
        monkeypatch.setenv("HF_ENDPOINT", url)
        t0 = time.monotonic()
        choice = choose_default(False)
        assert time.monotonic() - t0 < 3
    assert choice.spec == "efficientnet_lite0:imagenet"
    assert "is not in the HF cache" in choice.reason and url in choice.reason
    choose_default.cache_clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = choose_default(fetch.offline_mode())
    assert offline.spec == "efficientnet_lite0:imagenet" and "offline (" in offline.reason
    assert resolve_model("default") == "efficientnet_lite0:imagenet"


def test_auto_is_no_spec_of_its_own() -> None:
    from lamina.backends.embedders import parse_spec

    with pytest.raises(ConfigError, match="'auto' is a choice"):
        parse_spec("auto")


def test_the_default_clip_files_are_the_ones_open_clip_reads() -> None:
    import open_clip

    arch, tag = CLIP_DEFAULT.removeprefix("open_clip:").split("/")
    repo, filename = os.path.split(open_clip.get_pretrained_cfg(arch, tag)["hf_hub"])
    assert (repo, filename) == (CLIP_DEFAULT_REPO, "")
    assert set(OPEN_CLIP_FILES) == {
        open_clip.pretrained.HF_WEIGHTS_NAME,
        open_clip.pretrained.HF_SAFE_WEIGHTS_NAME,
    }
