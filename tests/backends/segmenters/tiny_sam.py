"""A tiny random SAM (~380 KB) saved like a real checkpoint, so the SAM path runs end to
end in the tests: the same loader, processor and mask decoding as real weights."""

from __future__ import annotations

from pathlib import Path


def save_tiny_sam(folder: Path, image_size: int = 128) -> Path:
    """Save a randomly initialised SamModel and its processor into `folder`."""
    import torch
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor
    from transformers.models.sam.configuration_sam import (
        SamMaskDecoderConfig,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    torch.manual_seed(0)
    vision = SamVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=16,
        output_channels=32,
        mlp_dim=64,
        global_attn_indexes=[1],
        window_size=4,
        num_pos_feats=16,
    )
    prompt = SamPromptEncoderConfig(hidden_size=32, image_size=image_size, patch_size=16)
    decoder = SamMaskDecoderConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32,
        iou_head_hidden_dim=16,
    )  # fmt: skip
    config = SamConfig(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )
    SamModel(config).eval().save_pretrained(folder)
    processor = SamImageProcessor(
        size={"longest_edge": image_size}, pad_size={"height": image_size, "width": image_size}
    )
    SamProcessor(image_processor=processor).save_pretrained(folder)
    return folder
