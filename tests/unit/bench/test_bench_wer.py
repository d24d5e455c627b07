"""`voxline bench --wer`'s arithmetic and report (pure: no models, no calls)."""

from __future__ import annotations

from voxline.bench.wer import Utterance, normalize, wer, wer_report, wer_report_text, word_errors


def test_word_errors_count_edits_against_the_reference() -> None:
    assert word_errors("How many legs does a spider have?", "How many lands does a spider have?") == (1, 7)
    assert word_errors("What color is the sky?", "What color is this guy") == (2, 5)
    assert word_errors("Who wrote Romeo and Juliet?", "") == (5, 5)
    assert normalize("What is 2 plus 2? Set a 10-minute timer") == [
        "what", "is", "two", "plus", "two", "set", "a", "ten", "minute", "timer"]


def test_the_report_sets_call_beside_file_per_voice() -> None:
    utts = [Utterance("What is two plus two?", "espeak en-us 150", b""),
            Utterance("Where do penguins live?", "piper joe 1.0", b"")]
    report = wer_report(utts, ["What is 2 plus 2?", "Where do penguins live?"],
                        ["What is two plus two?", None], {}, {})
    assert report["wer_file_pct"] == 0.0 and report["wer_call_pct"] == wer(
        [("What is two plus two?", "What is two plus two?"), ("Where do penguins live?", "")])
    assert report["by_voice"]["piper joe 1.0"] == {"file": 0.0, "call": 100.0}
    assert report["calls_failed"] == 1
    text = wer_report_text(report)
    assert "heard differently (1)" in text and "1 calls gave no transcript" in text
