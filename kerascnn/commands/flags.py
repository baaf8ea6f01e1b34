"""One flag per config field, made from the field's metadata (`kerascnn.config.flag`).

`train.py` makes its flags from `TrainConfig`, `tune.py` from `SearchConfig`,
both with `add_config_flags`. A flag's help, type and allowed values are the
field's; each value given is converted to the field's type and checked by the
config's own `refusal` as it is parsed, so a bad one exits with status 2,
naming the flag, what was expected and what was received, before anything
heavy is imported:

    train.py: error: argument --epochs: expected an integer >= 1, received '0'

Example:

>>> import argparse
>>> from kerascnn.config import TrainConfig
>>> parser = add_config_flags(argparse.ArgumentParser(argument_default=argparse.SUPPRESS), TrainConfig)
>>> vars(parser.parse_args(["--lr-period", "3", "--batchnorm", "false"]))
{'lr_period': 3, 'batchnorm': False}
"""

import argparse
import dataclasses

from kerascnn.config import choices_of, field_type, refusal

BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
# What a value that cannot be read as the field's type was expected to be, when the field has no rule to say it.
TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def add_config_flags(parser, config_class, names=None):
    """Adds one flag per field of the dataclass `config_class` (`--lr-period` for `lr_period`) to `parser`.

    No flag has a default of its own (give the parser
    `argument_default=argparse.SUPPRESS`): an unset flag leaves its field to
    the config file or the field's default, so the command can layer them.

    Args:
        parser: `argparse.ArgumentParser`.
        config_class: a dataclass whose fields are made with `kerascnn.config.flag`.
        names: iterable of field names to make flags for. Defaults to all.

    Returns:
        `parser`.
    """
    for field in dataclasses.fields(config_class):
        if names is not None and field.name not in names:
            continue
        option = "--" + field.name.replace("_", "-")
        if field.metadata.get("switch"):
            parser.add_argument(option, dest=field.name, action="store_const", const=True, help=help_of(field))
            continue
        choices = choices_of(field)
        parser.add_argument(option, dest=field.name, type=flag_type(field), choices=choices, help=help_of(field),
                            metavar=field.name.upper() if choices else None)
    return parser


def help_of(field):
    """The flag's help: the field's, then the values it allows and its default."""
    text = field.metadata.get("help", "")
    notes = []
    choices = choices_of(field)
    if choices:
        notes.append("one of: " + ", ".join(map(str, choices)))
    if field.default is not None and "default" not in text and not field.metadata.get("switch"):
        notes.append(f"default: {field.default}")
    if notes:
        text = f"{text} ({'; '.join(notes)})".strip()
    return text.replace("%", "%%")  # argparse formats help with %


def flag_type(field):
    """argparse type of `field`'s flag: the text as the field's type, refused (`argparse.ArgumentTypeError`) when
    the config would refuse it; a refused choice is left to argparse, which lists the choices."""
    kind = field_type(field)

    def convert(text):
        try:
            value = BOOLEANS[text.lower()] if kind is bool else kind(text)
        except (KeyError, ValueError):
            rule = field.metadata.get("rule")
            raise argparse.ArgumentTypeError(f"expected {rule.expected if rule else TYPE_WORDS[kind]}, "
                                             f"received {text!r}") from None
        refused = None if choices_of(field) else refusal(field, value)
        if refused is not None:
            expected, why = refused
            raise argparse.ArgumentTypeError(f"expected {expected}, received {text!r}" + (f" ({why})" if why else ""))
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its own messages
    return convert
