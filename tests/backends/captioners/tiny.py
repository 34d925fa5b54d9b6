"""A tiny random ViT-GPT2 captioner saved to a folder (a few hundred KB), so the whole
caption path runs offline: its captions are random words of its vocabulary."""

from __future__ import annotations

from pathlib import Path

WORDS = ["[PAD]", "[BOS]", "[EOS]", "[UNK]", "a", "photo", "of", "cat", "dog", "page", "text"]


def save_tiny_captioner(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        PreTrainedTokenizerFast,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        unk_token="[UNK]",
    )
    encoder = ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
    )
    decoder = GPT2Config(
        vocab_size=len(WORDS),
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_positions=64,
        add_cross_attention=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 1, 0, 2
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(config=config)
    # Random weights pick the special tokens as often as words: keep them out, so every
    # caption is words of the vocabulary (max_new_tokens ends it).
    model.generation_config.suppress_tokens = [0, 1, 2, 3]
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
