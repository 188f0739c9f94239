"""The voice library (built-in and cloned voices) and what OpenAI's names mean in LockN."""
