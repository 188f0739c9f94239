"""A copy-paste example of the OpenAI-compatible speech endpoint, in curl and the openai SDK."""

from __future__ import annotations

import reflex as rx


def curl_example(base_url: str) -> str:
    return (
        f"curl {base_url}/v1/audio/speech \\\n"
        '  -H "Authorization: Bearer $LOCKN_API_KEY" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        '  -d \'{"model": "tts-1", "voice": "alloy", "input": "Hello from LockN!"}\' \\\n'
        "  --output hello.mp3"
    )


def python_example(base_url: str) -> str:
    return (
        "import os\n\nfrom openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{base_url}/v1", api_key=os.environ["LOCKN_API_KEY"])\n'
        'speech = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello from LockN!")\n'
        'speech.write_to_file("hello.mp3")'
    )


def code_example(base_url: str) -> rx.Component:
    snippets = (("curl", "bash", curl_example(base_url)), ("Python (openai)", "python", python_example(base_url)))
    return rx.tabs.root(
        rx.tabs.list(*[rx.tabs.trigger(label, value=label) for label, _, _ in snippets]),
        *[rx.tabs.content(rx.code_block(code, language=language, show_line_numbers=False, can_copy=True,
                                        wrap_long_lines=False, width="100%", overflow_x="auto"),
                          value=label, padding_top="0.75rem")
          for label, language, code in snippets],
        default_value=snippets[0][0], width="100%", data_testid="code-example",
    )
