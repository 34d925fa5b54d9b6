"""Classifier heads on stored embeddings: logistic regression (scikit-learn) and a small
MLP (torch), their features, their ONNX form.

Both heads end as the same thing: a stack of dense layers (`Head.layers`, (W, b) pairs
with a ReLU between them) and a softmax. lamina predicts with that stack in NumPy, and
the ONNX export is the same stack as Gemm / Relu / Softmax nodes, so the two agree to
float32 rounding whichever library trained the head.

Features are the embedding layer's L2-normalised vectors of the labelled images, written
once to a float32 `.npy` under `<store>/cache/features/` and read memory-mapped: the MLP
reads each mini-batch's rows from the map, so an epoch copies one batch at a time, never
the whole matrix.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lamina.core.errors import LaminaError

HEADS = ("logreg", "mlp")
SHRINK = 10  # rows of pooled variance each feature's variance is shrunk with
CLASS_WEIGHTS = ("balanced", "none")


@dataclass(frozen=True)
class HeadConfig:
    """How one head is trained. `class_weight="balanced"` weighs each class by
    n / (classes x its count) in the loss; `c_values` are the logistic regression's
    inverse regularisation strengths, tried in order and kept by validation score;
    the MLP stops after `patience` epochs without a better validation balanced accuracy
    (ties broken by the validation loss) and keeps its best epoch. `device`: auto (CUDA
    when present, with AMP), cpu or cuda; `gpu_memory_mb` caps the process's share of the GPU."""

    head: str = "logreg"
    class_weight: str = "balanced"
    seed: int = 0
    c_values: tuple[float, ...] = (0.1, 1.0, 10.0)
    hidden: int = 256
    dropout: float = 0.2
    epochs: int = 100
    patience: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    device: str = "auto"
    gpu_memory_mb: int = 4096

    def check(self) -> None:
        if self.head not in HEADS:
            raise LaminaError(f"unknown head {self.head!r}", hint=f"use one of {', '.join(HEADS)}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise LaminaError(
                f"unknown class weighting {self.class_weight!r}",
                hint=f"use one of {', '.join(CLASS_WEIGHTS)}",
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise LaminaError(f"unknown device {self.device!r}", hint="use auto, cpu or cuda")


@dataclass
class Head:
    """A trained head: dense layers (W: (out, in), b: (out,)), ReLU between them, then
    softmax over `classes`."""

    classes: list[str]
    layers: list[tuple[np.ndarray, np.ndarray]]
    kind: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.layers[0][0].shape[1])

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype=np.float32)
        for k, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if k < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h

    def predict_proba(self, x: np.ndarray, block: int = 65_536) -> np.ndarray:
        """Class probabilities of the rows of `x` (read `block` rows at a time).

        Example:
            >>> eye = (np.eye(2, dtype=np.float32), np.zeros(2, np.float32))
            >>> h = Head(["a", "b"], [eye], "logreg")
            >>> print(h.predict_proba(np.array([[1.0, 0.0]])).round(3))
            [[0.731 0.269]]
        """
        out = np.empty((len(x), len(self.classes)), np.float32)
        for start in range(0, len(x), block):
            z = self.logits(x[start : start + block])
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            out[start : start + len(z)] = e / e.sum(axis=1, keepdims=True)
        return out

    def save(self, folder: Path) -> Path:
        """`head.npz`: the weights lamina predicts with, and the classes."""
        import io

        from lamina.core.layout import atomic_write_bytes

        buf = io.BytesIO()
        arrays: dict[str, Any] = {f"w{k}": w for k, (w, _) in enumerate(self.layers)}
        arrays |= {f"b{k}": b for k, (_, b) in enumerate(self.layers)}
        arrays |= {"classes": np.array(self.classes), "kind": np.array(self.kind)}
        np.savez(buf, **arrays)
        path = folder / "head.npz"
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, folder: Path) -> Head:
        with np.load(folder / "head.npz", allow_pickle=False) as z:
            n = sum(1 for k in z.files if k.startswith("w"))
            layers = [
                (z[f"w{k}"].astype(np.float32), z[f"b{k}"].astype(np.float32)) for k in range(n)
            ]
            return cls([str(c) for c in z["classes"]], layers, str(z["kind"]))

    def to_onnx(self, backbone: str, extra: dict[str, str] | None = None) -> bytes:
        """The head as an ONNX model: input `embedding` (N, dim) float32, the backbone's
        L2-normalised vector; output `probabilities` (N, classes). The backbone and the
        classes are in its metadata (`backbone`, `classes` as JSON).

        Example:
            >>> eye = (np.eye(2, dtype=np.float32), np.zeros(2, np.float32))
            >>> h = Head(["a", "b"], [eye], "logreg")
            >>> len(h.to_onnx("efficientnet_lite0:imagenet")) > 100
            True
        """
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        nodes, inits = [], []
        prev = "embedding"
        for k, (w, b) in enumerate(self.layers):
            inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(b, f"b{k}")]
            out = f"dense{k}"
            nodes.append(helper.make_node("Gemm", [prev, f"w{k}", f"b{k}"], [out], transB=1))
            prev = out
            if k < len(self.layers) - 1:
                nodes.append(helper.make_node("Relu", [prev], [f"relu{k}"]))
                prev = f"relu{k}"
        nodes.append(helper.make_node("Softmax", [prev], ["probabilities"], axis=1))
        graph = helper.make_graph(
            nodes,
            f"lamina_{self.kind}_head",
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", self.dim])],
            [
                helper.make_tensor_value_info(
                    "probabilities", TensorProto.FLOAT, ["n", len(self.classes)]
                )
            ],
            inits,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="lamina"
        )
        model.ir_version = 8  # what onnxruntime >= 1.17 reads
        meta = {
            "backbone": backbone,
            "classes": json.dumps(self.classes),
            "input": "L2-normalised embedding",
            **(extra or {}),
        }
        helper.set_model_props(model, meta)
        onnx.checker.check_model(model)
        return model.SerializeToString()


# -- features ----------------------------------------------------------------------------


def feature_matrix(store: Any, model: str | None, ids: list[str]) -> tuple[np.ndarray, str, str]:
    """(the rows of `ids` as a read-only memory map of float32, the model, the embed
    layer id). Labelled images the layer has no vector for are named, with the
    `lamina embed` command that fixes it; images whose embedding failed (an error row)
    are named too (re-embedding will not help: the hint says to leave them out).

    Example:
        >>> x, model, layer = feature_matrix(store, None, ids)  # doctest: +SKIP
    """
    from lamina.core.layout import atomic_write_bytes
    from lamina.core.vectors import embedding_layers, list_models, load_embeddings

    layers = embedding_layers(store)
    if not layers:
        raise LaminaError(
            f"the store {store.root} has no embeddings yet",
            hint="lamina embed (then train again)",
        )
    model = model or list_models(store)[-1]
    if model not in layers:
        raise LaminaError(
            f"no embeddings of model {model!r} in the store (models: {', '.join(sorted(layers))})",
            hint=f"lamina embed --model {model}",
        )
    folder = layers[model]
    parts = sorted(folder.glob("part-*.parquet"))
    h = hashlib.sha256(model.encode())
    for p in parts:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    h.update("\n".join(ids).encode())
    cache = store.root / "cache" / "features" / f"{folder.name}-{h.hexdigest()[:16]}.npy"
    if not cache.is_file():
        emb = load_embeddings(store, model)
        pos = {i: k for k, i in enumerate(emb.ids.tolist())}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise LaminaError(
                f"{len(missing)} labelled image(s) have no {model} embedding, e.g. "
                + ", ".join(missing[:5]),
                hint=f"lamina embed --model {model} (it embeds only what is missing); an "
                "image that cannot be decoded stays missing: label it out or --drop-missing",
            )
        import io

        buf = io.BytesIO()
        np.save(buf, emb.vectors[[pos[i] for i in ids]].astype(np.float32))
        atomic_write_bytes(cache, buf.getvalue(), fsync=False)
        del emb
    return np.load(cache, mmap_mode="r"), model, folder.name


def embedded_ids(store: Any, model: str | None) -> tuple[str, set[str], set[str]]:
    """(the model, ids with a vector of it, ids whose embedding failed), read from the
    layer's id and error columns only (default model: the latest embedded)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from lamina.core.layers import readable_parts
    from lamina.core.vectors import embedding_layers, list_models

    layers = embedding_layers(store)
    if not layers:
        raise LaminaError(
            f"the store {store.root} has no embeddings yet", hint="lamina embed (then train again)"
        )
    model = model or list_models(store)[-1]
    if model not in layers:
        raise LaminaError(
            f"no embeddings of model {model!r} in the store (models: {', '.join(sorted(layers))})",
            hint=f"lamina embed --model {model}",
        )
    good: set[str] = set()
    failed: set[str] = set()
    for part in readable_parts(layers[model]):
        t = pq.read_table(part, columns=["image_id", "model", "error"])
        t = t.filter(pc.equal(t["model"], model))
        for image_id, error in zip(t["image_id"].to_pylist(), t["error"].to_pylist(), strict=True):
            (failed if error else good).add(image_id)
    return model, good, failed - good


# -- training ----------------------------------------------------------------------------


def _class_weights(y: np.ndarray, n_classes: int, how: str) -> np.ndarray:
    if how == "none":
        return np.ones(n_classes, np.float32)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(y) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    recalls = [float((pred[y == c] == c).mean()) for c in np.unique(y)]
    return float(np.mean(recalls)) if recalls else 0.0


def _standardiser(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each feature over `rows`, read a block at a time.
    Embeddings share a large common direction (every vector of a CLIP model is close to
    the others), so the heads learn on standardised features; `_fold` then moves the
    scaling into the first layer, and the head still takes the raw vector. Each variance
    is shrunk toward the mean variance as if `SHRINK` rows had it: with a few dozen
    labelled images, a feature that barely varied among them would otherwise be blown
    up (negligible from a few thousand rows)."""
    total = np.zeros(x.shape[1], np.float64)
    squares = np.zeros(x.shape[1], np.float64)
    rows = np.sort(rows)
    for s in range(0, len(rows), 65_536):
        block = np.asarray(x[rows[s : s + 65_536]], np.float64)
        total += block.sum(axis=0)
        squares += (block * block).sum(axis=0)
    n = max(len(rows), 1)
    mean = total / n
    var = np.maximum(squares / n - mean * mean, 0.0)
    var = (n * var + SHRINK * var.mean()) / (n + SHRINK)
    return mean.astype(np.float32), np.maximum(np.sqrt(var), 1e-6).astype(np.float32)


def _fold(
    w: np.ndarray, b: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The layer W((x - mean) / std) + b as a layer on x itself."""
    w2 = (w / std[None, :]).astype(np.float32)
    return w2, (b - w2 @ mean).astype(np.float32)


def train_head(
    config: HeadConfig,
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    classes: list[str],
) -> Head:
    """Train one head on rows `train` of `x` (labels `y`, class indices), choosing its
    stopping point on rows `val`.

    Example:
        >>> head = train_head(HeadConfig("logreg"), x, y, tr, va, ["a", "b"])  # doctest: +SKIP
    """
    config.check()
    t0 = time.perf_counter()
    mean, std = _standardiser(x, train)
    if config.head == "logreg":
        head = _train_logreg(config, x, y, train, val, classes, (mean, std))
    else:
        head = _train_mlp(config, x, y, train, val, classes, (mean, std))
    head.layers[0] = _fold(*head.layers[0], mean, std)
    head.info["input_mean"], head.info["input_std"] = mean, std
    head.info["train_seconds"] = round(time.perf_counter() - t0, 3)
    head.info["config"] = asdict(config)
    return head


def _train_logreg(
    config: HeadConfig,
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    classes: list[str],
    scale: tuple[np.ndarray, np.ndarray],
) -> Head:
    from sklearn.linear_model import LogisticRegression

    k = len(classes)
    mean, std = scale
    xt = (np.asarray(x[np.sort(train)], np.float32) - mean) / std  # sklearn needs them in memory
    yt = y[np.sort(train)]
    xv, yv = (np.asarray(x[np.sort(val)], np.float32) - mean) / std, y[np.sort(val)]
    weights = _class_weights(yt, k, config.class_weight)
    sample_weight = weights[yt]
    best: tuple[float, Any, float] | None = None
    tried = []
    for c in config.c_values:
        clf = LogisticRegression(C=c, max_iter=2000, random_state=config.seed)
        clf.fit(xt, yt, sample_weight=sample_weight)
        score = _balanced_accuracy(yv, clf.predict(xv)) if len(yv) else 0.0
        tried.append({"C": c, "val_balanced_accuracy": round(score, 6)})
        if best is None or score > best[0]:
            best = (score, clf, c)
        elif len(yv):
            break  # validation got worse as C grew: stop early
    assert best is not None
    clf = best[1]
    # Classes absent from the training rows get a row of -inf-like logits: never predicted.
    w = np.zeros((k, xt.shape[1]), np.float32)
    b = np.full(k, -1e4, np.float32)
    present = clf.classes_.astype(int)
    if len(present) == 2:  # sklearn keeps one row for two classes: logit difference
        coef, icpt = clf.coef_[0], clf.intercept_[0]
        w[present[1]], b[present[1]] = coef / 2, icpt / 2
        w[present[0]], b[present[0]] = -coef / 2, -icpt / 2
    else:
        w[present], b[present] = clf.coef_, clf.intercept_
    head = Head(classes, [(w, b)], "logreg", {"C": best[2], "tried": tried, "estimator": clf})
    head.info["val_balanced_accuracy"] = round(best[0], 6)
    return head


def pick_device(wanted: str) -> str:
    import torch

    if wanted == "cuda" and not torch.cuda.is_available():
        raise LaminaError("--device cuda: no CUDA device is available", hint="use --device cpu")
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


def _train_mlp(
    config: HeadConfig,
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    classes: list[str],
    scale: tuple[np.ndarray, np.ndarray],
) -> Head:
    import torch

    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    cuda = device == "cuda"
    if cuda:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, config.gpu_memory_mb * 2**20 / total))
    k, dim = len(classes), int(x.shape[1])
    net = torch.nn.Sequential(
        torch.nn.Linear(dim, config.hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(config.dropout),
        torch.nn.Linear(config.hidden, k),
    ).to(device)
    weights = torch.tensor(_class_weights(y[train], k, config.class_weight), device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    rng = np.random.default_rng(config.seed)
    val_sorted = np.sort(val)
    yv = y[val_sorted]

    mean, std = scale

    def batch(rows: np.ndarray) -> torch.Tensor:
        # Rows in file order: a memory map reads them in one forward sweep.
        return torch.from_numpy((np.asarray(x[rows], np.float32) - mean) / std).to(device)

    def val_score() -> tuple[float, float]:
        """(balanced accuracy, -mean loss) on the validation rows: higher is better; the
        loss breaks ties, so a head that is right with more confidence wins."""
        if not len(val_sorted):
            return 0.0, 0.0
        net.eval()
        preds, loss = [], 0.0
        with torch.no_grad(), torch.autocast(device, enabled=cuda):
            for s in range(0, len(val_sorted), 4096):
                rows = val_sorted[s : s + 4096]
                out = net(batch(rows)).float()
                target = torch.from_numpy(y[rows].astype(np.int64)).to(device)
                loss += float(torch.nn.functional.cross_entropy(out, target, reduction="sum"))
                preds.append(out.argmax(1).cpu().numpy())
        net.train()
        return _balanced_accuracy(yv, np.concatenate(preds)), -loss / len(val_sorted)

    best_score, best_state, best_epoch, since = (-1.0, 0.0), None, 0, 0
    history = []
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(train)
        for s in range(0, len(order), config.batch_size):
            rows = np.sort(order[s : s + config.batch_size])
            target = torch.from_numpy(y[rows].astype(np.int64)).to(device)
            with torch.autocast(device, enabled=cuda):
                loss = loss_fn(net(batch(rows)), target)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        score = val_score()
        history.append(round(score[0], 6))
        if score > best_score:
            best_score, best_epoch, since = score, epoch, 0
            best_state = {n: t.detach().cpu().clone() for n, t in net.state_dict().items()}
        else:
            since += 1
            if since >= config.patience:
                break
    assert best_state is not None
    layers = [
        (
            best_state["0.weight"].numpy().astype(np.float32),
            best_state["0.bias"].numpy().astype(np.float32),
        ),
        (
            best_state["3.weight"].numpy().astype(np.float32),
            best_state["3.bias"].numpy().astype(np.float32),
        ),
    ]
    info = {
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "val_history": history,
        "val_balanced_accuracy": round(best_score[0], 6),
        "device": device,
        "amp": cuda,
        "state_dict": best_state,
    }
    return Head(classes, layers, "mlp", info)
