"""The media plane: peer connections, the direct RTP receive and send path, playout, and the
aiortc/aioice hooks (all in `hooks`)."""
