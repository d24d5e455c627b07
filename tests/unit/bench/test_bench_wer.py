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


def test_the_report_sets_each_stage_of_the_replayed_call_path_between_file_and_call() -> None:
    utts = [Utterance("What is two plus two?", "espeak en-us 150", b""),
            Utterance("Where do penguins live?", "piper joe 1.0", b"")]
    replayed = [{"codec": "What is two plus two?", "cuts": ["What is two plus two?", "What is two plus you?"],
                 "splits": 0},
                {"codec": "Where do penguins live?", "cuts": ["Where do penguins live?", "Where do penguins live?"],
                 "splits": 1}]
    report = wer_report(utts, ["What is 2 plus 2?", "Where do penguins live?"],
                        ["What is two plus you?", "Where do penguins live?"], {}, {}, replayed)
    assert report["wer_codec_pct"] == 0.0
    assert report["wer_cut_pct"] == round((0.0 + 100 / 9) / 2, 1)  # the mean of the two phases' WER
    assert report["wer_call_pct"] == round(100 / 9, 1) and report["replay_splits"] == 1
    assert report["by_voice"]["espeak en-us 150"]["cut"] == round((0.0 + 20.0) / 2, 1)
    text = wer_report_text(report)
    assert "call - file +11.1 points: codec +0.0, cut +5.6, call +5.5" in text, text
    assert "1 of 2 phases heard what the call heard" in text


def test_the_corpus_says_each_text_in_two_voices_across_accents_rates_and_piper() -> None:
    from voxline.bench.voices import MORE_VOICES, VOICES
    from voxline.bench.wer import TEXTS, corpus_plan

    plan = corpus_plan()
    assert len(plan) >= 30 and len({t for t, _ in plan}) == len(TEXTS)
    for text in TEXTS:
        assert len({v for t, v in plan if t == text}) == 2, text
    used = {v for _, v in plan}
    assert used == set(VOICES) | set(MORE_VOICES)  # every voice speaks
    assert len({v[2] for v in used if v[1] == "espeak"}) >= 8 and len({v[3] for v in used if v[1] == "espeak"}) >= 6
    assert len({v[2] for v in used if v[1] == "piper"}) == 3  # Piper at three speeds
    assert not set(MORE_VOICES) & set(VOICES)  # the tests' voices (drawn from VOICES) stay as they were
