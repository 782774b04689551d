"""Prompt checking and tokenization with CLIP's BPE tokenizer (shared by the CLIP towers and
the runtime, which must not import the networks)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

from mcaclip.errors import PromptError


@lru_cache(maxsize=1)
def _tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def check_prompts(prompts: Sequence[str], context_length: int) -> None:
    """Empty prompts and prompts over ``context_length - 2`` tokens are errors, never truncated."""
    limit = context_length - 2  # start and end tokens
    for prompt in prompts:
        if not prompt.strip():
            raise PromptError("empty prompt: say what to edit, e.g. 'blue goatee'")
        n = len(_tokenizer().encode(prompt))
        if n > limit:
            raise PromptError(
                f"prompt is {n} tokens, over the text encoder's limit of {limit}: "
                f"shorten {prompt[:40]!r}..."
            )


def tokenize(prompts: Sequence[str], context_length: int) -> torch.Tensor:
    """Checked prompts -> token ids [B, context_length] (int64)."""
    check_prompts(prompts, context_length)
    return _tokenizer()(list(prompts), context_length=context_length)
