"""Tiny, randomly initialised models saved the way real weights are, so the backends'
real loading code runs offline (no real CLIP / DINOv2 weights can be had here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TINY_CLIP = "lamina-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    # vocab_size must cover open_clip's own BPE tokenizer (49408 tokens).
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_open_clip(folder: Path) -> str:
    """Register a tiny open_clip architecture (in this process) and save random weights;
    returns the spec that loads them: `open_clip:<arch>/<checkpoint path>`."""
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{TINY_CLIP}.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    checkpoint = folder / "tiny_clip.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    return f"open_clip:{TINY_CLIP}/{checkpoint}"


def tiny_timm(folder: Path, name: str = "test_vit") -> Path:
    """Random weights of one of timm's test models, saved as safetensors."""
    import timm
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    path = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


def photos() -> dict[str, np.ndarray]:
    """Real photos shipped with scikit-image."""
    import skimage.data

    return {n: getattr(skimage.data, n)() for n in ("chelsea", "coffee", "rocket", "astronaut")}


def tiny_hf_clip(folder: Path) -> Path:
    """A tiny CLIP saved with save_pretrained: config, weights, image processor and a
    byte-level BPE tokenizer with a small vocabulary."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in letters + [f"{c}</w>" for c in letters]:
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 16,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }
    vision = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8))
    model.save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


def tiny_onnx(path: Path, channels: int = 6) -> Path:
    """A tiny ONNX image model: a 1x1 convolution with fixed weights, (N, C, H, W) out."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(channels, 3, 1, 1)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixels", "w"], ["features"])],
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", channels, "h", "w"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path
