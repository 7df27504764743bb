"""From rows to tensors: tokenisation with loss masks, packing, and padding into batches.

Labels follow the Hugging Face convention: ``labels[t]`` is the token that position ``t - 1`` must
predict (the shift happens in the loss), and ``-100`` means "no loss here".

- ``text``: every token is a target; a text longer than ``max_seq_len`` is cut into windows.
- ``prompt_completion``: ``bos? + prompt + completion + eos``; only completion and eos are targets.
- ``chat``: the tokenizer's chat template; only assistant turns (with their end-of-turn marker) are
  targets. Each span is tokenised on its own, exactly as an engine sees a prompt and then samples.
- Prompts are encoded by ``input_format`` (``prompt_token_ids``, ``render_chat``), the functions the
  evaluator and the engine use too, and the final model records that format
  (``input_format.json``), so it is evaluated and served on exactly the input it was trained on.
- The first token of every example is never a target, so in a packed row no example learns to
  predict the first token of the next one.

Packing puts whole examples, in order, into rows of ``max_seq_len`` tokens (greedy first fit in
sequence). Attention still crosses example boundaries inside a packed row (GPT-style packing):
the loss does not, but an example can attend to the one before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from llmops.errors import InvalidInput
from llmops.train.input_format import prompt_token_ids, render_chat, text_token_ids
from llmops.train.rows import ChatMessage, ChatRow, PromptCompletionRow, Row, TextRow

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One training sequence: ``input_ids`` and ``labels`` of equal length."""

    input_ids: list[int]
    labels: list[int]

    @property
    def num_targets(self) -> int:
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)


@dataclass
class EncodeStats:
    """What encoding had to do to fit ``max_seq_len``."""

    rows: int = 0
    examples: int = 0
    truncated: int = 0
    dropped: int = 0  # rows with no target left after truncation


@dataclass(frozen=True)
class Batch:
    """A padded micro-batch; every tensor is [batch, seq]."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    @property
    def num_tokens(self) -> int:
        """Non-padding tokens."""
        return int(self.attention_mask.sum())

    @property
    def num_targets(self) -> int:
        """Tokens the loss is computed on (after the shift)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


@dataclass
class _Pieces:
    """Token spans of one example, each marked as target or not."""

    ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def add(self, ids: Sequence[int], *, target: bool) -> None:
        self.ids.extend(ids)
        self.labels.extend(ids if target else [IGNORE_INDEX] * len(ids))


def encode_rows(
    rows: Sequence[Row], tokenizer: PreTrainedTokenizerBase, max_seq_len: int
) -> tuple[list[Example], EncodeStats]:
    """Tokenise rows into examples of at most ``max_seq_len`` tokens."""
    stats = EncodeStats(rows=len(rows))
    examples: list[Example] = []
    for row in rows:
        if isinstance(row, TextRow):
            pieces = _text_pieces(row, tokenizer)
            windows = _windows(pieces, max_seq_len)
            stats.truncated += len(windows) > 1
            examples.extend(windows)
            continue
        pieces = (
            _prompt_pieces(row, tokenizer)
            if isinstance(row, PromptCompletionRow)
            else _chat_pieces(row, tokenizer)
        )
        example = _finish(pieces.ids[:max_seq_len], pieces.labels[:max_seq_len])
        stats.truncated += len(pieces.ids) > max_seq_len
        if example.num_targets == 0:
            stats.dropped += 1
        else:
            examples.append(example)
    stats.examples = len(examples)
    if not examples:
        raise InvalidInput(
            f"no usable examples: all {len(rows)} rows were empty or cut off", param="max_seq_len"
        )
    return examples, stats


def _eos(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    if tokenizer.eos_token_id is None:
        raise InvalidInput("the tokenizer has no eos token to end examples with", param="tokenizer")
    return [int(tokenizer.eos_token_id)]


def _finish(ids: list[int], labels: list[int]) -> Example:
    """The first token is never a target: nothing before it in the example predicts it."""
    return Example(input_ids=ids, labels=[IGNORE_INDEX, *labels[1:]])


def _text_pieces(row: TextRow, tokenizer: PreTrainedTokenizerBase) -> _Pieces:
    pieces = _Pieces()
    pieces.add(_prompt(tokenizer, row.text) + _eos(tokenizer), target=True)
    return pieces


def _windows(pieces: _Pieces, max_seq_len: int) -> list[Example]:
    """Cut a long text into consecutive windows so no pretraining text is thrown away."""
    spans = range(0, len(pieces.ids), max_seq_len)
    windows = [_finish(pieces.ids[i : i + max_seq_len], pieces.labels[i : i + max_seq_len]) for i in spans]
    return [w for w in windows if w.num_targets > 0]


def _prompt_pieces(row: PromptCompletionRow, tokenizer: PreTrainedTokenizerBase) -> _Pieces:
    pieces = _Pieces()
    pieces.add(_prompt(tokenizer, row.prompt), target=False)
    pieces.add(text_token_ids(tokenizer, row.completion) + _eos(tokenizer), target=True)
    return pieces


def _prompt(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """A raw prompt as every model trained here expects it: bos (when the tokenizer has one) + text."""
    return prompt_token_ids(tokenizer, text, add_bos=tokenizer.bos_token_id is not None)


def _render(tokenizer: PreTrainedTokenizerBase, messages: Sequence[ChatMessage], *, prompt: bool) -> str:
    return render_chat(tokenizer, messages, add_generation_prompt=prompt)


def _chat_pieces(row: ChatRow, tokenizer: PreTrainedTokenizerBase) -> _Pieces:
    """Render growing prefixes of the conversation; the text each assistant turn adds is the target."""
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidInput(
            "the tokenizer has no chat template; use the prompt_completion schema", param="schema"
        )
    messages = row.messages
    pieces, done = _Pieces(), ""
    for index, message in enumerate(messages):
        if message.role != "assistant":
            continue
        prompt = _render(tokenizer, messages[:index], prompt=True)
        turn = _render(tokenizer, messages[: index + 1], prompt=False)
        if not (prompt.startswith(done) and turn.startswith(prompt)):
            raise InvalidInput("the chat template is not prefix-stable; cannot mask prompts", param="schema")
        pieces.add(text_token_ids(tokenizer, prompt[len(done) :]), target=False)
        pieces.add(text_token_ids(tokenizer, turn[len(prompt) :]), target=True)
        done = turn
    rest = _render(tokenizer, messages, prompt=False)[len(done) :]
    pieces.add(text_token_ids(tokenizer, rest), target=False)
    return pieces


def pack_examples(examples: Sequence[Example], max_seq_len: int) -> list[Example]:
    """Put whole examples, in order, into rows of at most ``max_seq_len`` tokens.

    An example that does not fit in the current row starts the next one; the tail of a row stays
    empty (it becomes padding at collation).
    """
    rows: list[Example] = []
    ids: list[int] = []
    labels: list[int] = []
    for example in examples:
        if ids and len(ids) + len(example.input_ids) > max_seq_len:
            rows.append(Example(ids, labels))
            ids, labels = [], []
        ids = ids + example.input_ids
        labels = labels + example.labels
    if ids:
        rows.append(Example(ids, labels))
    return rows


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    """Right-pad examples to the longest one: input_ids, attention_mask, labels are [batch, seq]."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[i, :n] = torch.tensor(example.input_ids, dtype=torch.long)
        labels[i, :n] = torch.tensor(example.labels, dtype=torch.long)
        attention_mask[i, :n] = 1
    return Batch(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
