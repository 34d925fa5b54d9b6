"""Captions compared with image clusters: the agreement scores, the caption clustering
with the package-shipped MiniLM, and the pass on a store."""

from __future__ import annotations

from pathlib import Path

from lamina.analysis.language import agreement, cluster_texts


def test_agreement_of_equal_and_split_partitions() -> None:
    same = agreement([0, 0, 0, 1, 1, 1], [4, 4, 4, 9, 9, 9])
    assert (same.ari, same.nmi, same.images) == (1.0, 1.0, 6)
    assert all(r["purity"] == 1.0 for r in same.by_image_cluster)
    # The captions split image cluster 1 in two and merge it with nothing.
    split = agreement([0, 0, 0, 1, 1, 1, 1], [4, 4, 4, 9, 9, 7, 7])
    assert split.ari is not None and 0 < split.ari < 1
    worst = split.by_image_cluster[0]
    assert (worst["image_cluster"], worst["caption_clusters"], worst["purity"]) == (1, 2, 0.5)
    assert agreement([0], [1]).ari is None  # one image: nothing to compare


def test_captions_cluster_by_meaning() -> None:
    texts = [
        "a cat sleeping on a sofa",
        "a kitten playing with yarn",
        "a tabby cat on a windowsill",
        "a red sports car on a road",
        "a blue truck parked in a street",
        "an old car in a garage",
    ]
    labels = cluster_texts(texts, 2).tolist()
    assert labels[0] == labels[1] == labels[2] != labels[3] == labels[4] == labels[5]


def test_caption_clusters_pass_on_a_store(tmp_path: Path) -> None:
    from lamina.core.store import Store
    from lamina.jobs.caption import CaptionConfig, CompareConfig, caption, compare
    from lamina.jobs.cluster import ClusterConfig, cluster
    from lamina.jobs.embed import EmbedConfig, embed
    from lamina.jobs.scan import ScanConfig, scan
    from tests.backends.captioners.tiny import save_tiny_captioner
    from tests.conftest import write_photo

    src = tmp_path / "src"
    for i in range(6):
        write_photo(src / f"{i}.jpg", i, size=(96, 64))
    store = Store.open(tmp_path / "store", create=True)
    scan(store, ScanConfig(sources=(str(src),), progress=False))
    embed(store, EmbedConfig(models=("default",), workers=1, offline=True, progress=False))
    cluster(store, ClusterConfig(k=2))
    model = f"hf:{save_tiny_captioner(tmp_path / 'tiny')}"
    # The default selection: the exemplars of the two clusters (and no outlier flags yet).
    done = caption(store, CaptionConfig(model, max_new_tokens=4, progress=False))
    assert done.plan.selection == "exemplars + outliers" and 2 <= done.processed <= 6
    result = compare(store, CompareConfig(progress=False))
    assert result.images == done.processed
    assert result.ari is not None and -1.0 <= result.ari <= 1.0 and 0.0 <= result.nmi <= 1.0
    rows = store.sql("select image_cluster, caption_cluster from caption_clusters").to_pylist()
    assert len(rows) == done.processed
    assert {r["image_cluster"] for r in rows} <= {0, 1}
