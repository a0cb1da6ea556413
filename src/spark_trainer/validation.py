"""The text rule (``kit.text``) for what arrives outside a JSON body: path and query.

Installed as a dependency of the whole application, so it runs after routing (the path
parameters have their names) and before any handler looks anything up.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from spark_trainer.errors import ValidationFailed
from spark_trainer.kit.text import MESSAGE, find_control_character


async def reject_control_characters(connection: HTTPConnection) -> None:
    for name, value in (*connection.path_params.items(), *connection.query_params.multi_items()):
        if not isinstance(value, str):
            continue
        bad = find_control_character(value) or find_control_character(name)
        if bad is not None:
            raise ValidationFailed(f"{name}: {MESSAGE} (found {bad})")
