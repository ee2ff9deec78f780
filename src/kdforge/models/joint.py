"""A joint intent-detection and slot-filling model: one encoder, an intent head and a slot head.

Chen, Zhuo & Wang, "BERT for Joint Intent Classification and Slot Filling", arXiv 1902.10909,
Sec. 3: the intent is read from the first token, ``y^i = softmax(W^i h_1 + b^i)`` (Eq. 1; BERT's
pooled ``[CLS]`` state where the backbone has a pooler, as their implementation and
``BertForSequenceClassification`` do), the slot of word ``n`` from the state of its first
sub-token, ``y^s_n = softmax(W^s h_n + b^s)`` (Eq. 2), and training maximises
``p(y^i, y^s | x) = p(y^i | x) prod_n p(y^s_n | x)`` (Eq. 3): the sum of the intent and slot
cross-entropies. A pQRNN backbone reads its intent by attention pooling instead (``intent_pooling:
attention``), as pQRNN's own classifier does: its first position has seen only one direction.

The backbone is any model ``AutoModel`` builds (a BERT-style encoder, a pQRNN encoder); its config
is nested in ``JointConfig.backbone``. The class is a plain ``PreTrainedModel`` registered with
``AutoConfig`` / ``AutoModel`` when this module is imported (``import kdforge`` does), so a saved
folder loads with ``AutoModel.from_pretrained`` and no remote code. Intent names are the config's
``id2label`` (``num_labels`` intents), slot tags its ``slot_labels``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import ModelOutput

from kdforge.models.pooling import attention_pool

MODEL_TYPE = "kdforge_joint"
IGNORE = -100  # slot targets of positions without a word start (cross-entropy's ignore_index)


def placeholder_tags(count: int) -> list[str]:
    """Slot-tag names of a head nobody named yet, like transformers' ``LABEL_i`` for labels."""
    return [f"TAG_{i}" for i in range(count)]


class JointConfig(PretrainedConfig):
    """A backbone's config plus the two heads: intents in ``id2label``, slot tags in ``slot_labels``.

    The backbone's shape (``num_hidden_layers``, ``hidden_size``, ``num_attention_heads``,
    ``intermediate_size``) reads and writes through to ``backbone``, so code that reads any model's
    shape, and the layer cut of ``build_student``, treat a joint model like its encoder.
    """

    model_type = MODEL_TYPE
    sub_configs_defaults = {"backbone": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    def __init__(
        self,
        backbone: PretrainedConfig | dict | None = None,
        slot_labels: list[str] | None = None,
        intent_pooling: Literal["first", "attention"] = "first",
        classifier_dropout: float = 0.1,
        **kwargs,
    ) -> None:
        self.backbone = backbone
        self.slot_labels = list(slot_labels or ["O"])
        self.intent_pooling = intent_pooling
        self.classifier_dropout = classifier_dropout
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    @property
    def num_slots(self) -> int:
        return len(self.slot_labels)

    @property
    def num_hidden_layers(self) -> int:
        return self.backbone.num_hidden_layers

    @num_hidden_layers.setter
    def num_hidden_layers(self, value: int) -> None:
        self.backbone.num_hidden_layers = value

    @property
    def hidden_size(self) -> int:
        return self.backbone.hidden_size

    @hidden_size.setter
    def hidden_size(self, value: int) -> None:
        self.backbone.hidden_size = value

    @property
    def num_attention_heads(self) -> int:
        return self.backbone.num_attention_heads

    @num_attention_heads.setter
    def num_attention_heads(self, value: int) -> None:
        self.backbone.num_attention_heads = value

    @property
    def intermediate_size(self) -> int | None:
        return getattr(self.backbone, "intermediate_size", None)

    @intermediate_size.setter
    def intermediate_size(self, value: int) -> None:
        self.backbone.intermediate_size = value


@dataclass
class JointOutput(ModelOutput):
    """``logits`` ``[B, C]`` over intents, ``slot_logits`` ``[B, T, S]`` over slot tags per token."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    slot_logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


class JointIntentSlotModel(PreTrainedModel):
    """Backbone, then an intent head on the sentence (Eq. 1) and a slot head on every token (Eq. 2)."""

    config_class = JointConfig
    config: JointConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    _supports_sdpa = True  # attention is the backbone's: whatever it supports
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: JointConfig, backbone: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        self.backbone = backbone if backbone is not None else AutoModel.from_config(config.backbone)
        self.config.backbone = self.backbone.config  # one config object: changes to either reach both
        width = config.hidden_size
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.attention = nn.Linear(width, 1) if config.intent_pooling == "attention" else None
        self.intent_classifier = nn.Linear(width, config.num_labels)
        self.slot_classifier = nn.Linear(width, config.num_slots)
        self.post_init()

    @classmethod
    def from_backbone(cls, backbone: PreTrainedModel, intents: int, slots: int, **kwargs) -> JointIntentSlotModel:
        """Fresh heads of ``intents`` and ``slots`` outputs (placeholder names ``LABEL_i`` / ``TAG_i``) on a
        trained encoder, used as it is: what fine-tuning starts from."""
        config = JointConfig(
            backbone=backbone.config.to_dict(),  # a copy: building the config resets the copy's attention setting
            slot_labels=placeholder_tags(slots),
            num_labels=intents,
            classifier_dropout=getattr(backbone.config, "hidden_dropout_prob", 0.1),
            pad_token_id=getattr(backbone.config, "pad_token_id", None),
            **kwargs,
        )
        return cls(config, backbone)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        from transformers import initialization as init

        if isinstance(module, nn.Linear):  # the heads (the backbone initialises its own modules)
            init.normal_(module.weight, mean=0.0, std=getattr(self.config.backbone, "initializer_range", 0.02))
            if module.bias is not None:
                init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_input_embeddings(value)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        slot_targets: Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> JointOutput | tuple:
        """``labels`` ``[B]`` (intent ids) and ``slot_targets`` ``[B, T]`` (tag ids, ``-100`` where no word
        starts) give ``loss``, the sum of the two cross-entropies (Eq. 3)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
            **kwargs,
        )
        tokens = out.last_hidden_state
        if self.attention is not None:
            sentence = attention_pool(tokens, attention_mask, self.attention)
        else:
            pooled = getattr(out, "pooler_output", None)
            sentence = pooled if pooled is not None else tokens[:, 0]
        logits = self.intent_classifier(self.dropout(sentence))
        slot_logits = self.slot_classifier(self.dropout(tokens))
        loss = None
        if labels is not None or slot_targets is not None:
            loss = logits.new_zeros((), dtype=torch.float32)
            if labels is not None:
                loss = loss + F.cross_entropy(logits.float(), labels)
            if slot_targets is not None:
                flat = slot_logits.flatten(0, 1).float()
                loss = loss + F.cross_entropy(flat, slot_targets.flatten(), ignore_index=IGNORE)
        result = JointOutput(
            loss=loss,
            logits=logits,
            slot_logits=slot_logits,
            hidden_states=getattr(out, "hidden_states", None),
            attentions=getattr(out, "attentions", None),
        )
        return result if return_dict is not False else result.to_tuple()


AutoConfig.register(MODEL_TYPE, JointConfig, exist_ok=True)
AutoModel.register(JointConfig, JointIntentSlotModel, exist_ok=True)
