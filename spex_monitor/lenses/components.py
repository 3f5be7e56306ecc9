"""Component lens: features are attention heads and/or MLP blocks of a local transformers model.

A masked component is ablated through forward hooks on a fixed input: an attention head by zeroing (or
mean-replacing) its slice of the input to the attention output projection, an MLP block by zeroing (or
mean-replacing) the block's output before the residual add. Each row of a batch carries its own mask,
so one forward evaluates many ablations. Keys look like ``L3.H5`` and ``L3.mlp``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from .features import Feature

Ablation = Literal["zero", "mean"]

# Module paths per architecture: the attention output projection (its *input* holds the heads side by side)
# and the MLP output (before the residual add).
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "bert": ("bert.encoder.layer.{layer}.attention.output.dense", "bert.encoder.layer.{layer}.output.dense"),
    "gpt2": ("transformer.h.{layer}.attn.c_proj", "transformer.h.{layer}.mlp"),
}


@dataclass(frozen=True)
class Component:
    """One model component that a feature switches: attention head ``head`` of ``layer``, or its MLP."""

    layer: int
    head: int | None  # None = the layer's MLP block

    @property
    def key(self) -> str:
        """The monitor key: ``L<layer>.H<head>`` or ``L<layer>.mlp``."""
        return f"L{self.layer}.mlp" if self.head is None else f"L{self.layer}.H{self.head}"


class ComponentLens:
    """Value function over component masks for one fixed input.

    Args:
        model: a transformers model (BERT or GPT-2 family, or give ``paths``).
        input_ids, attention_mask: the fixed input, shape ``(1, L)``.
        score: maps the model output (and the batch size) to one float per row, e.g. log-odds.
        heads, mlps: which component kinds are features.
        ablation: ``"zero"`` or ``"mean"`` (mean activation over ``reference_ids``' positions).
        paths: ``(attention_projection_path, mlp_path)`` templates with ``{layer}``.
    """

    def __init__(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        score: Callable[[Any], np.ndarray],
        heads: bool = True,
        mlps: bool = True,
        ablation: Ablation = "zero",
        reference_ids: torch.Tensor | None = None,
        paths: tuple[str, str] | None = None,
        batch_rows: int = 64,
    ) -> None:
        if ablation not in ("zero", "mean"):
            raise ValueError(f"ablation must be 'zero' or 'mean', got {ablation!r}")
        if ablation == "mean" and reference_ids is None:
            raise ValueError("ablation='mean' needs reference_ids to average activations over")
        config = model.config
        if paths is None:
            if config.model_type not in ARCHITECTURES:
                raise ValueError(
                    f"no module paths known for model_type {config.model_type!r}; pass paths=(attn, mlp)"
                )
            paths = ARCHITECTURES[config.model_type]
        self.model = model.eval()
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        self.score = score
        self.batch_rows = batch_rows
        self.n_layers = config.num_hidden_layers
        self.n_heads = config.num_attention_heads
        self.components = [
            Component(layer, head)
            for layer in range(self.n_layers)
            for head in ([*range(self.n_heads)] if heads else []) + ([None] if mlps else [])
        ]
        if not self.components:
            raise ValueError("no components selected: set heads=True and/or mlps=True")
        modules = dict(model.named_modules())
        self._attn = [modules[paths[0].format(layer=i)] for i in range(self.n_layers)]
        self._mlp = [modules[paths[1].format(layer=i)] for i in range(self.n_layers)]
        self._means: dict[tuple[str, int], torch.Tensor] = {}
        if ablation == "mean":
            self._record_means(reference_ids)  # type: ignore[arg-type]
        self._batch_mask: torch.Tensor | None = None

    @property
    def features(self) -> list[Feature]:
        """One feature per selected component, keyed like ``L3.H5`` / ``L3.mlp``, layer by layer."""
        return [Feature(c.key) for c in self.components]

    @property
    def n_features(self) -> int:
        """Number of selected components."""
        return len(self.components)

    @torch.inference_mode()
    def _record_means(self, reference_ids: torch.Tensor) -> None:
        handles = []
        for layer in range(self.n_layers):
            handles.append(self._attn[layer].register_forward_pre_hook(self._saver("attn", layer, pre=True)))
            handles.append(self._mlp[layer].register_forward_hook(self._saver("mlp", layer, pre=False)))
        try:
            self.model(input_ids=reference_ids)
        finally:
            for handle in handles:
                handle.remove()

    def _saver(self, kind: str, layer: int, pre: bool) -> Callable[..., None]:
        def hook(module: Any, inputs: Any, output: Any = None) -> None:
            tensor = inputs[0] if pre else output
            self._means[(kind, layer)] = tensor.reshape(-1, tensor.shape[-1]).mean(dim=0)

        return hook

    def _keep_columns(self, layer: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row multipliers for the heads' concatenated outputs (B, 1, width) and the MLP (B, 1, 1)."""
        assert self._batch_mask is not None
        batch = self._batch_mask.shape[0]
        head_keep = torch.ones(batch, self.n_heads)
        mlp_keep = torch.ones(batch, 1)
        for col, comp in enumerate(self.components):
            if comp.layer != layer:
                continue
            if comp.head is None:
                mlp_keep[:, 0] = self._batch_mask[:, col]
            else:
                head_keep[:, comp.head] = self._batch_mask[:, col]
        head_dim = width // self.n_heads
        return head_keep.repeat_interleave(head_dim, dim=1)[:, None, :], mlp_keep[:, :, None]

    def _attn_hook(self, layer: int) -> Callable[..., Any]:
        def hook(module: Any, inputs: Any) -> Any:
            hidden = inputs[0]
            keep, _ = self._keep_columns(layer, hidden.shape[-1])
            keep = keep.to(hidden.dtype)
            mean = self._means.get(("attn", layer))
            replaced = hidden * keep if mean is None else hidden * keep + mean * (1 - keep)
            return (replaced, *inputs[1:])

        return hook

    def _mlp_hook(self, layer: int) -> Callable[..., Any]:
        def hook(module: Any, inputs: Any, output: Any) -> Any:
            _, keep = self._keep_columns(layer, self.n_heads)
            keep = keep.to(output.dtype)
            mean = self._means.get(("mlp", layer))
            return output * keep if mean is None else output * keep + mean * (1 - keep)

        return hook

    @torch.inference_mode()
    def value_function(self, masks: np.ndarray) -> np.ndarray:
        """``score`` of the fixed input with the masked components ablated: ``(k,)`` float64 for
        ``(k, n_features)`` bool masks (True = kept), ``batch_rows`` masks per forward.

        Raises:
            ValueError: masks of the wrong shape.
        """
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 2 or masks.shape[1] != self.n_features:
            raise ValueError(f"masks must have shape (k, {self.n_features}), got {masks.shape}")
        handles = []
        for layer in range(self.n_layers):
            handles.append(self._attn[layer].register_forward_pre_hook(self._attn_hook(layer)))
            handles.append(self._mlp[layer].register_forward_hook(self._mlp_hook(layer)))
        out = []
        try:
            for start in range(0, len(masks), self.batch_rows):
                block = masks[start : start + self.batch_rows]
                self._batch_mask = torch.as_tensor(block, dtype=torch.float32)
                rows = block.shape[0]
                result = self.model(
                    input_ids=self.input_ids.expand(rows, -1),
                    attention_mask=self.attention_mask.expand(rows, -1),
                )
                out.append(np.asarray(self.score(result), dtype=np.float64))
        finally:
            self._batch_mask = None
            for handle in handles:
                handle.remove()
        return np.concatenate(out)
