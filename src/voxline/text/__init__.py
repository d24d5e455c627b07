"""Text rules shared by the agent and the model services (where a reply is cut into speakable pieces)."""
