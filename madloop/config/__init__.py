"""Run configuration: the schema (``schema``: RunConfig, JSON and TOML), named layers of settings
(``presets``: the presets, and what a choice of algorithm or model family implies), and resolution
(``resolution``: layers -> a checked RunConfig, where component names become objects).

The names here are the CLI's flags (``n_synth`` is ``--n-synth``) and ``madloop.run``'s keywords.
"""

from madloop.config.presets import IMPLIED, PRESETS
from madloop.config.resolution import COMPONENTS, build_data, components, option_types, resolve, takes_tuple, validate
from madloop.config.schema import CORE_FIELDS, RunConfig, read_config_file


__all__ = ["COMPONENTS", "CORE_FIELDS", "IMPLIED", "PRESETS", "RunConfig", "build_data", "components", "option_types",
           "read_config_file", "resolve", "takes_tuple", "validate"]
