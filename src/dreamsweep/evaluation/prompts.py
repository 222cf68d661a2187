"""The evaluation prompt suite: DreamBench templates (Ruiz et al. 2022) or the user's own.

Templates use `{token}` (the unique identifier) and `{class}` (the class noun).
"""

from __future__ import annotations

from dreamsweep.data.prompt_text import fill_prompt

SHARED_BACKGROUNDS = [
    "a {token} {class} in the jungle",
    "a {token} {class} in the snow",
    "a {token} {class} on the beach",
    "a {token} {class} on a cobblestone street",
    "a {token} {class} on top of pink fabric",
    "a {token} {class} on top of a wooden floor",
    "a {token} {class} with a city in the background",
    "a {token} {class} with a mountain in the background",
    "a {token} {class} with a blue house in the background",
    "a {token} {class} on top of a purple rug in a forest",
]
OBJECT_ONLY = [
    "a {token} {class} with a wheat field in the background",
    "a {token} {class} with a tree and autumn leaves in the background",
    "a {token} {class} with the Eiffel Tower in the background",
    "a {token} {class} floating on top of water",
    "a {token} {class} floating in an ocean of milk",
    "a {token} {class} on top of green grass with sunflowers around it",
    "a {token} {class} on top of a mirror",
    "a {token} {class} on top of the sidewalk in a crowded street",
    "a {token} {class} on top of a dirt road",
    "a {token} {class} on top of a white rug",
]
LIVE_ONLY = [
    "a {token} {class} wearing a red hat",
    "a {token} {class} wearing a santa hat",
    "a {token} {class} wearing a rainbow scarf",
    "a {token} {class} wearing a black top hat and a monocle",
    "a {token} {class} in a chef outfit",
    "a {token} {class} in a firefighter outfit",
    "a {token} {class} in a police outfit",
    "a {token} {class} wearing pink glasses",
    "a {token} {class} wearing a yellow shirt",
    "a {token} {class} in a purple wizard outfit",
]
SHARED_PROPERTIES = [
    "a red {token} {class}",
    "a purple {token} {class}",
    "a shiny {token} {class}",
    "a wet {token} {class}",
    "a cube shaped {token} {class}",
]
SUITES = {
    "objects": SHARED_BACKGROUNDS + OBJECT_ONLY + SHARED_PROPERTIES,
    "live": SHARED_BACKGROUNDS + LIVE_ONLY + SHARED_PROPERTIES,
}
LIVE_CLASSES = {
    "dog",
    "cat",
    "puppy",
    "kitten",
    "person",
    "man",
    "woman",
    "boy",
    "girl",
    "child",
    "baby",
    "face",
    "animal",
    "bird",
    "horse",
}


def suite_name(name: str, class_name: str) -> str:
    """`auto` picks the live-subject templates for animals and people, else objects."""
    if name == "auto":
        return "live" if class_name.lower() in LIVE_CLASSES else "objects"
    if name not in SUITES:
        raise ValueError(
            f"eval.prompts: unknown suite '{name}'; known: auto, {sorted(SUITES)}"
            " (or set eval.prompt_list)"
        )
    return name


def select_templates(
    name: str, class_name: str, num_prompts: int, own: list[str] | None = None
) -> list[str]:
    """num_prompts templates spread evenly over the suite (backgrounds, outfits, properties)."""
    templates = list(own) if own else SUITES[suite_name(name, class_name)]
    if num_prompts >= len(templates):
        return templates
    step = len(templates) / num_prompts
    return [templates[int(i * step)] for i in range(num_prompts)]


def without_token(template: str, class_name: str) -> str:
    """The prompt CLIP-T scores against: the token replaced by nothing, the class noun kept."""
    return fill_prompt(template, "", class_name)
