"""Any `transformers` causal LM, built from a config alone: no hub download, ever."""

from __future__ import annotations

import torch
import torch.nn as nn

from distrain.config import ModelConfig, RecipeError


class HFCausalLM(nn.Module):
    """Wraps a `transformers` causal LM so that, like TinyGPT, it maps token ids to logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        try:
            import transformers
        except ImportError:
            raise RecipeError(
                "model.arch 'transformers' needs the transformers package: pip install 'distrain[transformers]'"
            ) from None
        options = dict(cfg.hf_config)
        model_type = options.pop("model_type", None)
        if not model_type:
            raise RecipeError("recipe key 'model.hf_config' needs a 'model_type' (for example 'llama')")
        options.setdefault("vocab_size", cfg.vocab_size)
        options.setdefault("max_position_embeddings", cfg.context)
        try:
            config = transformers.AutoConfig.for_model(model_type, **options)
        except (ValueError, TypeError) as error:
            raise RecipeError(f"recipe key 'model.hf_config' is not a valid config: {error}") from None
        self.model = transformers.AutoModelForCausalLM.from_config(config)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens, use_cache=False).logits
