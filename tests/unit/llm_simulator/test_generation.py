"""Completions and usage are a pure function of the conversation."""

from __future__ import annotations

from llm_simulator.generation import (
    ECHO_WORDS,
    MESSAGE_OVERHEAD_TOKENS,
    Turn,
    cached_tokens,
    completion_text,
    count_tokens,
    prompt_tokens,
    stream_pieces,
    usage_for,
)

QUESTION = [Turn("user", "What is the capital of France?")]
CONVERSATION = [
    Turn("system", "You are terse."),
    Turn("user", "Hello"),
    Turn("assistant", "Hi. How can I help?"),
    Turn("user", "Name three primes"),
]


def test_tokens_are_counted_per_word_four_characters_each() -> None:
    assert count_tokens("") == 0
    assert count_tokens("a") == 1
    assert count_tokens("abcd") == 1
    assert count_tokens("abcde") == 2
    assert count_tokens("  two   word\n") == 2
    assert count_tokens("你好世界你好") == 2  # no spaces: one 6-character word


def test_prompt_tokens_add_a_fixed_overhead_per_message() -> None:
    assert prompt_tokens(QUESTION) == count_tokens(QUESTION[0].text) + MESSAGE_OVERHEAD_TOKENS
    assert prompt_tokens(CONVERSATION) == sum(
        count_tokens(t.text) + MESSAGE_OVERHEAD_TOKENS for t in CONVERSATION
    )


def test_cached_tokens_are_the_prefix_before_the_last_message() -> None:
    assert cached_tokens(QUESTION) == 0
    assert cached_tokens(CONVERSATION) == prompt_tokens(CONVERSATION[:-1])
    assert 0 < cached_tokens(CONVERSATION) < prompt_tokens(CONVERSATION)


def test_same_conversation_same_completion() -> None:
    first = completion_text(CONVERSATION, "glm-4.5")
    again = completion_text([Turn(t.role, t.text) for t in CONVERSATION], "glm-4.5")
    assert first == again


def test_different_prompts_give_different_completions() -> None:
    other = [*CONVERSATION[:-1], Turn("user", "Name four primes")]
    assert completion_text(CONVERSATION, "glm-4.5") != completion_text(other, "glm-4.5")
    # Roles matter too: the same words from the assistant are another conversation.
    swapped = [Turn("assistant", "What is the capital of France?")]
    assert completion_text(swapped, "glm-4.5") != completion_text(QUESTION, "glm-4.5")


def test_completion_echoes_the_last_user_message_and_names_the_model() -> None:
    text = completion_text(CONVERSATION, "kimi-k2-turbo-preview")
    assert '"Name three primes"' in text
    assert "kimi-k2-turbo-preview" in text


def test_long_prompts_are_echoed_only_in_part() -> None:
    words = [f"w{i}" for i in range(ECHO_WORDS + 5)]
    text = completion_text([Turn("user", " ".join(words))], "glm-4.6")
    assert " ".join(words[:ECHO_WORDS]) + "…" in text
    assert words[ECHO_WORDS] not in text.split()


def test_last_message_is_echoed_when_no_user_spoke() -> None:
    text = completion_text([Turn("system", "only a system prompt")], "glm-4.6")
    assert '"only a system prompt"' in text


def test_usage_counts_the_completion_with_the_same_rule() -> None:
    text = completion_text(CONVERSATION, "moonshot-v1-8k")
    usage = usage_for(CONVERSATION, text)
    assert usage.completion_tokens == count_tokens(text)
    assert usage.prompt_tokens == prompt_tokens(CONVERSATION)
    assert usage.cached_tokens == cached_tokens(CONVERSATION)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_pieces_rebuild_the_text_and_the_token_count() -> None:
    text = completion_text(CONVERSATION, "glm-4.5")
    pieces = stream_pieces(text)
    assert len(pieces) > 3
    assert "".join(pieces) == text
    assert sum(count_tokens(p) for p in pieces) == count_tokens(text)
