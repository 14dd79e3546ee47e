"""Helper of the `greeter` module, imported relatively from index.py."""


def make_greeting(greeting, audience):
    return "{}, {}!".format(greeting, audience)
