"""MQTT topic filters: validation and matching (MQTT 3.1.1 §4.7 / MQTT 5 §4.7), pure.

`+` matches exactly one level, `#` (last level only) matches the parent level and everything below it.
Filters starting with a wildcard do not match topics starting with `$` (e.g. `$aws/...`), as the spec says.
"""

from __future__ import annotations


class InvalidTopicFilter(ValueError):
    """The filter breaks the MQTT wildcard rules."""


def validate_filter(topic_filter: str) -> str:
    if not topic_filter:
        raise InvalidTopicFilter("a topic filter must not be empty")
    if "\x00" in topic_filter:
        raise InvalidTopicFilter("a topic filter must not contain NUL")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise InvalidTopicFilter(f"'#' must be a whole level and the last one: {topic_filter!r}")
        if "+" in level and level != "+":
            raise InvalidTopicFilter(f"'+' must be a whole level: {topic_filter!r}")
    return topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when `topic` (a concrete topic name, no wildcards) matches `topic_filter`."""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    if topic.startswith("$") and filter_levels[0] in {"+", "#"}:
        return False
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)
