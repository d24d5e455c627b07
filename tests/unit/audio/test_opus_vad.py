"""Opus coded in the loop (voxline.audio.opus) and the streaming Silero VAD, inline and batched."""

from __future__ import annotations

import asyncio
import fractions

import numpy as np
import pytest

from audio_helpers import dominant_hz, tone
from sentences import ICE, MONTHS, SPAIN, STATEMENTS, STOP, STORY, TURN_ENDS
from spoken import Corpus, floor16k
from voxline.audio.opus import FRAME_SAMPLES, RTP_RATE, OpusDecoder, OpusEncoder, encode_frames, silence_frame
from voxline.bench.voices import VOICES
from voxline.rtc.sdp import first_audio_codec
from voxline.services.threads import ModelThread
from voxline.services.vad import WINDOW_BYTES, SileroModel, SileroStream, VadBatcher

# -- Opus -----------------------------------------------------------------------------------


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0


def test_a_tone_survives_encode_frames_and_the_16k_decoder() -> None:
    source = tone(seconds=1.0)
    payloads = encode_frames(source)
    assert len(payloads) == RTP_RATE // FRAME_SAMPLES  # one payload per 20 ms
    assert all(payloads), "libopus gives a packet for every frame, the first included"
    decoder = OpusDecoder(16_000)
    decoded = np.frombuffer(b"".join(decoder.decode(p) for p in payloads), dtype=np.int16)
    # 16,000 samples, less the resampler's and the codec's delay (a few ms, not flushed).
    assert 15_000 <= decoded.size <= 16_000, decoded.size
    assert abs(dominant_hz(decoded, 16_000) - 440) < 5
    steady = decoded[1_600:-1_600]  # away from the start-up and the cut
    assert 0.8 < rms(steady) / rms(source) < 1.25


def test_the_48k_decoder_gives_a_whole_frame_per_packet() -> None:
    payloads = encode_frames(tone(freq=1_000, seconds=0.5))
    decoder = OpusDecoder(48_000)
    sizes = [len(decoder.decode(p)) // 2 for p in payloads]
    assert sizes == [FRAME_SAMPLES] * len(payloads)


def test_every_packet_gives_its_20ms_at_16k() -> None:
    """No bursts (soxr's stream resampler gave 0 or ~490 samples a packet): VAD hears each at once."""
    decoder = OpusDecoder(16_000)
    sizes = [len(decoder.decode(p)) // 2 for p in encode_frames(tone(seconds=0.5))]
    assert sizes == [320] * len(sizes), sizes


def test_encode_frames_pads_the_last_frame() -> None:
    assert len(encode_frames(tone(seconds=0.03))) == 2  # 1,440 samples -> two 20 ms frames


def test_opus_encoder_stamps_the_packet_with_the_pts_given() -> None:
    encoder = OpusEncoder()
    source = tone(seconds=0.2)
    stamped = []
    for i, pts in enumerate(range(12_345, 12_345 + 10 * FRAME_SAMPLES, FRAME_SAMPLES)):
        packet = encoder.encode(source[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].tobytes(), pts)
        if packet is None:
            continue
        assert packet.pts == pts
        assert packet.time_base == fractions.Fraction(1, 48_000)
        assert 0 < packet.size < 400  # ~80 bytes a frame at 32 kbit/s, more at the start
        stamped.append(pts)
    assert len(stamped) >= 8


def test_silence_frame_decodes_to_silence_and_is_computed_once() -> None:
    first = silence_frame()
    assert isinstance(first, bytes) and 0 < len(first) < 20
    assert silence_frame() == first
    assert silence_frame() is first
    for rate in (16_000, 48_000):
        decoder = OpusDecoder(rate)
        decoded = np.frombuffer(b"".join(decoder.decode(first) for _ in range(10)), dtype=np.int16)
        assert decoded.size > 0
        assert int(np.abs(decoded.astype(np.int32)).max()) <= 8


def sdp(*media: str) -> str:
    head = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    return "\r\n".join(head + list(media)) + "\r\n"


OPUS_FIRST = ("m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 0.0.0.0\r\n"
              "a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000")
PCMU_FIRST = ("m=audio 9 UDP/TLS/RTP/SAVPF 0 111 8\r\nc=IN IP4 0.0.0.0\r\n"
              "a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000")
VIDEO = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000"


def test_first_audio_codec_reads_the_first_payload_type_of_the_audio_line() -> None:
    assert first_audio_codec(sdp(OPUS_FIRST)) == "opus"
    assert first_audio_codec(sdp(PCMU_FIRST)) == "pcmu"
    assert first_audio_codec(sdp(VIDEO, OPUS_FIRST)) == "opus"  # a video line first is skipped
    assert first_audio_codec(sdp(PCMU_FIRST.replace("\r\n", "\n"))) == "pcmu"  # bare LF line ends
    assert first_audio_codec(sdp(VIDEO)) is None
    assert first_audio_codec(sdp()) is None
    assert first_audio_codec("") is None


# -- VAD ------------------------------------------------------------------------------------

TEXTS = [TURN_ENDS[2], SPAIN.text, STATEMENTS[0], STORY, MONTHS.text, ICE.text, STATEMENTS[1], STOP.text]
FRAME_16K = 640  # 20 ms of s16 at 16 kHz


def probabilities(windows: list[tuple[bytes, float]]) -> list[float]:
    return [p for _, p in windows]


def fed_in(model: SileroModel, pcm: bytes, step: int) -> list[tuple[bytes, float]]:
    stream = model.stream()
    out = []
    for i in range(0, len(pcm), step):
        out += stream.process(pcm[i:i + step])
    return out


@pytest.fixture(scope="module")
def utterances(corpus: Corpus, request: pytest.FixtureRequest) -> list[bytes]:
    """Each text in the next of the corpus's voices, with 200 ms of the noise floor each side
    (speech and non-speech both)."""
    corpus.use_tts(request.getfixturevalue("tts"))
    return [floor16k(0.2, i) + corpus(text, VOICES[i % len(VOICES)]) + floor16k(0.2, i + 100)
            for i, text in enumerate(TEXTS)]


@pytest.mark.models
def test_vad_gives_the_same_probabilities_fed_20ms_at_a_time_or_in_big_chunks(vad_model, utterances) -> None:
    pcm = utterances[0]
    small = fed_in(vad_model, pcm, FRAME_16K)
    for step in (WINDOW_BYTES * 3 + 100, 48_000, len(pcm)):
        big = fed_in(vad_model, pcm, step)
        assert probabilities(big) == probabilities(small), step  # exact: the same arithmetic
        assert [w for w, _ in big] == [w for w, _ in small]
    assert len(small) == len(pcm) // WINDOW_BYTES
    assert b"".join(w for w, _ in small) == pcm[:len(small) * WINDOW_BYTES]
    probs = np.array(probabilities(small))
    assert probs.max() > 0.8 and probs[:5].max() < 0.3  # speech is found, the lead-in noise floor is not


@pytest.mark.models
def test_a_stream_keeps_the_partial_window_for_the_next_feed(vad_model) -> None:
    stream = vad_model.stream()
    assert stream.process(bytes(WINDOW_BYTES - 2)) == []
    assert len(stream.pending) == WINDOW_BYTES - 2
    assert len(stream.process(bytes(4))) == 1
    assert len(stream.pending) == 2
    stream.reset()
    assert stream.pending == b""


async def feed_concurrently(batcher: VadBatcher, model: SileroModel,
                            utterances: list[bytes]) -> list[list[float]]:
    """Every utterance fed 20 ms at a time, one task per stream, all at once."""
    async def one(pcm: bytes) -> list[float]:
        stream = SileroStream(model)
        out: list[float] = []
        for i in range(0, len(pcm), FRAME_16K):
            out += probabilities(await batcher.process(stream, pcm[i:i + FRAME_16K]))
            await asyncio.sleep(0)  # the other callers' packets come in between
        return out

    return list(await asyncio.gather(*(one(pcm) for pcm in utterances)))


@pytest.mark.models
async def test_vad_batcher_inline_matches_direct_processing(vad_model, utterances) -> None:
    direct = [probabilities(fed_in(vad_model, pcm, FRAME_16K)) for pcm in utterances[:4]]
    requests = sum(len(p) for p in direct)
    batcher = VadBatcher(vad_model)
    assert await feed_concurrently(batcher, vad_model, utterances[:4]) == direct
    assert 0 < batcher.calls < requests / 2, (batcher.calls, requests)  # one loop turn's requests go together


@pytest.mark.models
def test_the_batched_model_opens_the_lstm_batch_axis_and_agrees_with_the_original(vad_model, utterances) -> None:
    assert vad_model.batched is not None  # the model edit applied (and passed its own check at load)
    direct = [probabilities(fed_in(vad_model, pcm, FRAME_16K)) for pcm in utterances[:3]]
    streams = [vad_model.stream() for _ in range(3)]
    got: list[list[float]] = [[], [], []]
    for i in range(0, max(len(p) for p in utterances[:3]), FRAME_16K):
        for s, pcm in zip(streams, utterances[:3]):
            s.feed(pcm[i:i + FRAME_16K])
        for k, windows in enumerate(vad_model.run_windows(streams)):
            got[k] += probabilities(windows)
    for a, b in zip(got, direct):
        assert len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < 1e-5


@pytest.mark.models
async def test_vad_batcher_in_a_thread_matches_direct_processing_in_fewer_trips(vad_model, utterances) -> None:
    direct = [probabilities(fed_in(vad_model, pcm, FRAME_16K)) for pcm in utterances]
    requests = sum(len(p) for p in direct)  # one request per 20 ms frame that completes a window
    thread = ModelThread("vad")
    try:
        batcher = VadBatcher(vad_model, thread)
        got = await feed_concurrently(batcher, vad_model, utterances)
        assert got == direct
        assert 0 < batcher.calls < requests / 2, (batcher.calls, requests)  # eight streams share trips
        # Alone, a stream makes one trip per window it completes.
        alone = VadBatcher(vad_model, thread)
        assert await feed_concurrently(alone, vad_model, utterances[:1]) == direct[:1]
        assert alone.calls == len(direct[0])
    finally:
        thread.close()


@pytest.mark.models
async def test_two_requests_of_one_stream_in_one_batch_run_it_once(vad_model, utterances) -> None:
    pcm = utterances[1][:6 * WINDOW_BYTES]
    direct = fed_in(vad_model, pcm, len(pcm))
    thread = ModelThread("vad")
    try:
        batcher = VadBatcher(vad_model, thread)
        other, stream = vad_model.stream(), vad_model.stream()
        busy = asyncio.ensure_future(batcher.process(other, bytes(WINDOW_BYTES)))  # the thread is busy...
        await asyncio.sleep(0)
        halves = [pcm[:3 * WINDOW_BYTES], pcm[3 * WINDOW_BYTES:]]
        first, second = await asyncio.gather(*(batcher.process(stream, h) for h in halves))  # ...so these wait
        assert len(await busy) == 1
        assert batcher.calls == 2
        assert first == direct and second == []  # every window, once, to the first waiter
    finally:
        thread.close()


@pytest.mark.models
async def test_a_model_error_in_the_thread_reaches_every_waiter_and_the_batcher_recovers(vad_model) -> None:
    class Broken(SileroModel):
        def __init__(self, inner: SileroModel) -> None:
            self.session = inner.session
            self.batched = inner.batched
            self.fail = True

        def run_windows(self, streams):  # type: ignore[no-untyped-def]
            if self.fail:
                raise RuntimeError("model failed")
            return super().run_windows(streams)

    model = Broken(vad_model)
    thread = ModelThread("vad")
    try:
        batcher = VadBatcher(model, thread)
        streams = [model.stream() for _ in range(4)]
        results = await asyncio.gather(*(batcher.process(s, bytes(WINDOW_BYTES)) for s in streams),
                                       return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results), results
        model.fail = False
        fresh = model.stream()
        assert len(await batcher.process(fresh, bytes(WINDOW_BYTES))) == 1
    finally:
        thread.close()


def test_decimator_keeps_speech_band_drops_what_would_alias_and_ignores_chunking() -> None:
    from voxline.audio.resample import Decimator3

    t = np.arange(48_000) / 48_000

    def level_db(freq: float) -> float:
        d = Decimator3()
        x = (np.sin(2 * np.pi * freq * t) * 10_000).astype(np.int16)
        y = np.concatenate([d.push(x[i:i + 960]) for i in range(0, x.size, 960)])
        assert y.size == 16_000
        return 20 * np.log10(np.abs(y[200:]).max() / 10_000 + 1e-9)

    assert abs(level_db(440)) < 0.5 and abs(level_db(3_000)) < 0.5
    assert level_db(10_000) < -50  # would fold to 6 kHz at 16 kHz
    noise = (np.random.default_rng(1).standard_normal(24_000) * 3_000).astype(np.int16)
    whole = Decimator3().push(noise)
    d, parts, i = Decimator3(), [], 0
    for n in [1, 5, 959, 961, 480, 3_000] * 10:
        parts.append(d.push(noise[i:i + n]))
        i += n
    pieces = np.concatenate(parts)
    assert np.array_equal(pieces, whole[:pieces.size])


def test_libopus_direct_and_pyav_decoders_hear_the_same_tone() -> None:
    payloads = encode_frames(tone(seconds=1.0))
    native, fallback = OpusDecoder(16_000), OpusDecoder(16_000, native=False)
    assert native.native and not fallback.native  # libopus ships inside PyAV's wheel
    a = np.frombuffer(b"".join(native.decode(p) for p in payloads), dtype=np.int16).astype(np.float64)
    b = np.frombuffer(b"".join(fallback.decode(p) for p in payloads), dtype=np.int16).astype(np.float64)
    assert a.size == b.size == 16_000
    for pcm in (a, b):
        spectrum = np.abs(np.fft.rfft(pcm[2_000:14_000]))
        assert abs(np.argmax(spectrum) * 16_000 / 12_000 - 440) < 5
    assert 0.8 < np.sqrt(np.mean(a[2_000:] ** 2)) / np.sqrt(np.mean(b[2_000:] ** 2)) < 1.25
    assert native.decode(b"\xff\xff\xff") == b""  # a corrupt packet is skipped, not a crash


def test_a_frame_that_cannot_be_handled_is_dropped_without_ending_the_receiver() -> None:
    from types import SimpleNamespace

    from voxline.rtc.inline import InlineDecoderQueue as _InlineDecoderQueue

    def broken(pcm: bytes, rtp_time: int) -> None:
        raise RuntimeError("sink failed")

    queue = _InlineDecoderQueue(broken, 16_000)
    opus = SimpleNamespace(name="opus")
    frame = SimpleNamespace(data=encode_frames(tone(seconds=0.02))[0], timestamp=0)
    queue.put((opus, frame))  # the sink raises: counted, not raised into aiortc
    assert queue.errors == 1
    heard: list[int] = []
    fine = _InlineDecoderQueue(lambda pcm, t: heard.append(t), 16_000)
    fine.put((opus, SimpleNamespace(data=b"\xff\xff\xff", timestamp=960)))  # corrupt: skipped
    fine.put((opus, SimpleNamespace(data=frame.data, timestamp=1920)))
    assert heard == [1920] and fine.errors == 0


@pytest.mark.models
async def test_when_many_callers_talk_the_loop_batcher_waits_a_little_to_batch_more(vad_model) -> None:
    """Above BUSY_RATE windows a second a batch waits up to gather_ms; below it, none does."""
    from voxline.services.vad import BUSY_RATE

    async def run(batcher: VadBatcher, callers: int, seconds: float) -> tuple[int, int, float]:
        streams = [vad_model.stream() for _ in range(callers)]
        waits: list[float] = []
        requests = 0

        loop = asyncio.get_running_loop()
        start = loop.time()

        async def caller(stream: SileroStream, offset: float) -> None:
            # Each caller's windows come on its own clock, spread over each 32 ms (the network's
            # timing, not the server's), whenever the previous one was served.
            nonlocal requests
            k = 0
            while (due := start + offset + 0.032 * k) < start + seconds:
                await asyncio.sleep(max(0.0, due - loop.time()))
                t0 = loop.time()
                await batcher.process(stream, bytes(WINDOW_BYTES))
                waits.append(loop.time() - t0)
                requests += 1
                k += 1

        await asyncio.gather(*(caller(s, 0.032 * i / callers) for i, s in enumerate(streams)))
        return batcher.calls, requests, max(waits)

    calls, requests, longest = await run(VadBatcher(vad_model, gather_ms=10), callers=2, seconds=1.2)
    assert requests / 1.2 < BUSY_RATE and calls > requests * 0.6  # few callers: served one loop turn later
    eager, eager_requests, _ = await run(VadBatcher(vad_model, gather_ms=0), callers=12, seconds=3.0)
    calls, requests, longest = await run(VadBatcher(vad_model, gather_ms=10), callers=12, seconds=3.0)
    assert requests / 3.0 > BUSY_RATE  # 12 x 31 windows a second
    # The rate is known after the first second; from then on batches hold several callers.
    assert calls / requests < 0.75 * eager / eager_requests, (calls, requests, eager, eager_requests)
    # How long a window waited is a figure for a benchmark, not an assertion here (it is the
    # machine's speed as much as the batcher's): printed.
    print(f"longest wait for a VAD window with 12 callers, batching: {1000 * longest:.0f} ms")


def test_whisper_window_is_padded_as_silence_not_zeros() -> None:
    from faster_whisper.feature_extractor import FeatureExtractor

    from voxline.services.stt.whisper import window_features

    extractor = FeatureExtractor()
    t = np.arange(32_000) / 16_000
    speech = (0.3 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    window = window_features(extractor, speech, 1000)
    # The same as the features of the audio padded with 8 s of silence (away from the seam).
    padded = extractor(np.concatenate([speech, np.zeros(128_000, dtype=np.float32)]))[:, :1000]
    assert window.shape == (80, 1000)
    assert np.allclose(window[:, :190], padded[:, :190], atol=1e-4)
    assert np.allclose(window[:, 210:], padded[:, 210:], atol=1e-4)
    assert window[:, 300:].max() < -0.1  # silence, not the 0.0 a noise floor would give


def test_the_microphone_is_coded_like_a_browsers_and_the_agents_voice_as_celt() -> None:
    from voxline.client.audio import MIC_APPLICATION

    speech_like = tone(freq=220, seconds=0.4)
    # The TOC byte's top five bits: configs 0-15 are SILK or hybrid, 16-31 CELT only (RFC 6716).
    mic = {p[0] >> 3 for p in encode_frames(speech_like, application=MIC_APPLICATION)[2:]}
    agent = {p[0] >> 3 for p in encode_frames(speech_like)[2:]}
    assert MIC_APPLICATION == "voip" and max(mic) < 16, mic
    assert min(agent) >= 16, agent
    decoder = OpusDecoder(16_000)
    pcm = b"".join(decoder.decode(p) for p in encode_frames(speech_like, application="voip"))
    assert abs(dominant_hz(np.frombuffer(pcm, dtype=np.int16)[1600:], 16_000) - 220) < 10
    with pytest.raises(ValueError, match="unknown Opus application"):
        OpusEncoder(application="karaoke")
