"""The media server: WHIP, listening control, events WebSocket, the page, health and metrics."""
