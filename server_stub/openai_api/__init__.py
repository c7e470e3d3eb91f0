"""OpenAI-compatible chat serving: `/v1/chat/completions` and `/v1/models`, an extension beside the Tinker wire."""
