"""Prompts for a pretrained chat model: the practice problems through its tokenizer's chat template."""

from __future__ import annotations

from dataclasses import replace

from omegaconf import DictConfig

from rlpractice.textbook.problems import Textbook


def with_chat_template(book: Textbook, tokenizer, model_cfg: DictConfig) -> Textbook:
    """Prompts through the tokenizer's chat template (model=hf with an instruction-tuned checkpoint);
    unchanged for the built-in model, which learned the plain 'Question: ...\nSolution:' format."""
    use = model_cfg.get("chat_template", False)
    if use == "auto":
        use = bool(getattr(tokenizer, "chat_template", None))
    if not use:
        return book

    def render(p):
        content = f"{p.question}\n{model_cfg.instruction}".strip()
        text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                             add_generation_prompt=True)
        return replace(p, prompt_text=text)

    return Textbook(book.exposition, [render(p) for p in book.worked], [render(p) for p in book.practice],
                    [render(p) for p in book.heldout])
