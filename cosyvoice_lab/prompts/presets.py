"""Ready-made PromptSpecs for common voices (``PromptSpec.preset(name)``, the builder's dropdown)."""

from __future__ import annotations

from cosyvoice_lab.prompts.spec import PromptSpec

PRESETS: dict[str, PromptSpec] = {
    "news_anchor": PromptSpec(
        gender="female",
        age="middle-aged",
        timbre="clear",
        emotion="authoritative",
        articulation="crisp",
        scenario="news",
    ),
    "audiobook_narrator": PromptSpec(
        gender="male",
        age="middle-aged",
        pitch="low",
        pace="slow",
        timbre="warm",
        emotion="calm",
        articulation="clear",
        scenario="audiobook",
    ),
    "customer_service": PromptSpec(
        gender="female",
        age="young",
        timbre="sweet",
        emotion="friendly",
        articulation="clear",
        scenario="customer-service",
    ),
    "childrens_storyteller": PromptSpec(
        gender="female",
        age="young",
        pitch="high",
        pace="slow",
        timbre="warm",
        emotion="gentle",
        articulation="expressive",
        scenario="storytelling",
    ),
    "game_villain": PromptSpec(
        gender="male",
        age="middle-aged",
        pitch="low",
        pace="slow",
        timbre="husky",
        emotion="menacing",
        articulation="expressive",
        scenario="game",
    ),
    "documentary_narrator": PromptSpec(
        gender="male",
        age="elderly",
        pitch="low",
        pace="slow",
        timbre="mellow",
        emotion="solemn",
        articulation="clear",
        scenario="documentary",
    ),
    "ad_voiceover": PromptSpec(
        gender="male",
        age="young",
        pace="fast",
        volume="loud",
        timbre="magnetic",
        emotion="excited",
        articulation="crisp",
        scenario="advertising",
    ),
    "podcast_host": PromptSpec(
        gender="male", age="young", timbre="warm", emotion="friendly", articulation="conversational", scenario="podcast"
    ),
    "meditation_guide": PromptSpec(
        gender="female",
        age="middle-aged",
        pace="slow",
        volume="soft",
        timbre="breathy",
        emotion="gentle",
        scenario="meditation",
    ),
    "voice_assistant": PromptSpec(
        gender="female", age="young", timbre="clear", emotion="friendly", articulation="clear", scenario="assistant"
    ),
    "cartoon_child": PromptSpec(
        gender="female", age="child", pitch="high", pace="fast", timbre="sweet", emotion="playful", scenario="game"
    ),
}


# Public classes report the module users import them from.
