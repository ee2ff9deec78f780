"""Tiny language-model teachers for the LM tests: a BERT masked LM and a GPT-2 causal LM.

Both use the conftest WordPiece tokenizer and are saved as plain Hugging Face folders, so they
load through ``kdforge.models.load_model`` like any teacher. ``sharpness`` scales the final
LayerNorm before the (tied) output layer: confident, far-from-uniform teacher predictions.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.conftest import bert_config, make_tokenizer


def masked_lm_folder(folder: Path, sharpness: float = 20.0, seed: int = 3) -> Path:
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    model = BertForMaskedLM(bert_config()).eval()
    with torch.no_grad():
        model.cls.predictions.transform.LayerNorm.weight.mul_(sharpness)
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


def gpt2_config(layers: int = 2):
    from transformers import GPT2Config

    tokenizer = make_tokenizer()
    return GPT2Config(
        n_layer=layers,
        n_embd=32,
        n_head=4,
        n_positions=64,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def causal_lm_folder(folder: Path, sharpness: float = 20.0, seed: int = 4) -> Path:
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(gpt2_config()).eval()
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(sharpness)
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder
