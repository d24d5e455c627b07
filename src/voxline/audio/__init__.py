"""Audio: the libopus codec (ctypes), resampling and decimation to 16 kHz, WAV helpers."""
