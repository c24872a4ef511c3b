"""The streaming reasoning parser against the whole-text rule: any chunking, any byte split, same result."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dslocal.chat.events import AnswerDelta, ThinkingDelta, ThinkingWasAnswer
from dslocal.chat.reasoning import CLOSE, OPEN, ReasoningParser, collect, split_reasoning

# Transcripts are built from pieces that stress the tags: whole and partial tags, blank runs,
# characters of several UTF-8 widths (a byte split inside them must not break anything).
PIECES = [OPEN, CLOSE, "<", "</", "<th", "</thi", "<think", "</think", ">", "\n", "\n\n", " ", "  \t",
          "Hm.", "OK!", "answer", "思考", "答案", "🙂", "a<b", "x</y", "think>"]

transcripts = st.lists(st.sampled_from(PIECES), max_size=24).map("".join)
starts = st.sampled_from(["detect", "thinking", "answer"])


def stream(text: str, cuts: list[int], start: str) -> tuple[str, str, bool, bool]:
    parser = ReasoningParser(start)
    deltas = []
    points = sorted({c % (len(text) + 1) for c in cuts})
    last = 0
    for point in [*points, len(text)]:
        deltas += parser.feed(text[last:point])
        last = point
    deltas += parser.finish()
    thinking, answer = collect(deltas)
    return thinking, answer, parser.closed, parser.had_reasoning


def stream_bytes(data: bytes, cuts: list[int], start: str) -> tuple[str, str]:
    parser = ReasoningParser(start)
    deltas = []
    points = sorted({c % (len(data) + 1) for c in cuts})
    last = 0
    for point in [*points, len(data)]:
        deltas += parser.feed_bytes(data[last:point])
        last = point
    deltas += parser.finish()
    return collect(deltas)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(text=transcripts, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30), start=starts)
def test_any_chunking_gives_the_whole_text_result(text: str, cuts: list[int], start: str) -> None:
    whole = split_reasoning(text, start)
    thinking, answer, closed, had = stream(text, cuts, start)
    assert (thinking, answer) == (whole.thinking, whole.answer)
    assert closed == whole.closed
    assert had == whole.had_reasoning


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(text=transcripts, cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=30), start=starts)
def test_any_byte_split_gives_the_whole_text_result(text: str, cuts: list[int], start: str) -> None:
    whole = split_reasoning(text, start)
    assert stream_bytes(text.encode(), cuts, start) == (whole.thinking, whole.answer)


@settings(max_examples=1500, deadline=None)
@given(text=transcripts, start=starts)
def test_one_character_at_a_time(text: str, start: str) -> None:
    whole = split_reasoning(text, start)
    assert stream(text, list(range(len(text))), start)[:2] == (whole.thinking, whole.answer)


@settings(max_examples=1500, deadline=None)
@given(text=transcripts, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30))
def test_tags_never_reach_the_answer_before_the_reasoning_closes(text: str, cuts: list[int]) -> None:
    """Whatever is streamed as the answer while the parser is undecided never holds a partial
    ``</think>`` that later completes; once the reasoning closes, no answer delta carries the closing tag
    that closed it."""
    parser = ReasoningParser("detect")
    points = sorted({c % (len(text) + 1) for c in cuts})
    last, streamed = 0, []
    for point in [*points, len(text)]:
        for delta in parser.feed(text[last:point]):
            if isinstance(delta, AnswerDelta):
                streamed.append(delta.text)
            elif isinstance(delta, ThinkingWasAnswer):
                streamed = []
        last = point
    whole = split_reasoning(text, "detect")
    so_far = "".join(streamed)
    assert whole.answer.startswith(so_far) or so_far == ""


# The cases the issue names, and the ones clients break on (peers-and-user-pain.md, pain point 3).
CASES = [
    # (output, start, thinking, answer, closed, had_reasoning)
    ("<think>\nLet me see.\n</think>\n\nParis.", "detect", "Let me see.", "Paris.", True, True),
    ("Let me see.\n</think>\n\nParis.", "detect", "Let me see.", "Paris.", True, True),  # opening pre-filled
    ("Let me see.\n</think>\n\nParis.", "thinking", "Let me see.", "Paris.", True, True),
    ("<think>\nLet me see.</think>Paris.", "thinking", "Let me see.", "Paris.", True, True),  # tag repeated
    ("</think>Paris.", "detect", "", "Paris.", True, True),  # V3.1 without thinking
    ("<think>\n\n</think>\n\nParis.", "detect", "", "Paris.", True, True),  # empty block
    ("<think>\nStill going", "detect", "Still going", "", False, True),  # unterminated at stop
    ("Still going", "thinking", "Still going", "", False, True),
    ("Paris.", "detect", "", "Paris.", False, False),
    ("  Paris. <think> is a tag", "detect", "", "Paris. <think> is a tag", False, False),
    ("<think>a</think>b</think>c", "detect", "a", "b</think>c", True, True),  # only the first closing tag
    ("<think>x</think>", "answer", "", "<think>x</think>", False, False),
]


@pytest.mark.parametrize(("text", "start", "thinking", "answer", "closed", "had"), CASES)
def test_named_cases(text: str, start: str, thinking: str, answer: str, closed: bool, had: bool) -> None:
    whole = split_reasoning(text, start)
    assert (whole.thinking, whole.answer, whole.closed, whole.had_reasoning) == (thinking, answer, closed, had)
    assert stream(text, list(range(len(text))), start) == (thinking, answer, closed, had)


def test_a_pre_filled_opening_tag_is_reported_as_reasoning_after_the_fact() -> None:
    parser = ReasoningParser("detect")
    events = parser.feed("Let me think about it. ") + parser.feed("</thi") + parser.feed("nk>\nParis.")
    events += parser.finish()
    assert events[0] == AnswerDelta("Let me think about it. ")
    assert ThinkingWasAnswer("Let me think about it.") in events
    assert events[-1] == AnswerDelta("Paris.")


def test_thinking_streams_as_it_arrives_and_holds_only_a_possible_tag() -> None:
    parser = ReasoningParser("detect")
    assert parser.feed("<think>") == []
    assert parser.feed("Let me") == [ThinkingDelta("Let me")]
    assert parser.feed(" see </") == [ThinkingDelta(" see")]  # the blank and "</" wait
    assert parser.feed("think>") == []
    assert parser.feed("  Paris") == [AnswerDelta("Paris")]


def test_unknown_start_is_refused() -> None:
    with pytest.raises(ValueError, match="start must be one of"):
        ReasoningParser("maybe")
