"""Example Python entry point (SPEC §5).

The updater imports this module directory as a package and calls main(args).
Returning a dict whose "success" is true (or any other truthy value) means
success; raising, or returning None, False or {"success": False}, is a failure.
"""

import json
import os

from . import greeting


def main(args):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "index.json"), encoding="utf-8") as f:
        config = json.load(f).get("configuration", {})
    message = greeting.make_greeting(
        config.get("greeting", "Hello"), config.get("audience", "world")
    )
    print("greeter: " + message)
    print(
        "greeter: {} -> {}".format(
            os.environ.get("UPDATER_FROM_VERSION") or "none",
            os.environ.get("UPDATER_TO_VERSION", "?"),
        )
    )
    return {"success": True, "message": message, "args": list(args or [])}
