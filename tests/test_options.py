"""The shared encoder settings are declared once: the CLI's flags and the estimator's parameters come from them."""

from __future__ import annotations

import argparse

import pytest

from brainjepa import BrainJEPAEmbedder
from brainjepa.cli.embed import add_option_arguments, option_values
from brainjepa.errors import ConfigError
from brainjepa.evaluation.embed import EmbedOptions
from brainjepa.evaluation.options import EncoderOptions, option_fields


def _parser(options: type) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_option_arguments(parser, options)
    return parser


def test_flags_carry_each_fields_default_type_and_choices():
    parser = _parser(EmbedOptions)
    defaults = option_values(parser.parse_args([]), EmbedOptions)
    assert EmbedOptions(**defaults) == EmbedOptions(device=defaults["device"])  # every default as declared
    args = parser.parse_args(["--sampling-rate", "3", "--pad", "--precision", "fp32",
                              "--masked-views", "2", "--mask-keep", "0.5", "--normalization", "roi_zscore"])
    options = EmbedOptions(**option_values(args, EmbedOptions))
    assert (options.sampling_rate, options.pad, options.precision, options.masked_views,
            options.mask_keep, options.normalization) == (3, True, "fp32", 2, 0.5, "roi_zscore")
    assert EmbedOptions(**option_values(parser.parse_args(["--target-tr", "0.8"]), EmbedOptions)).target_tr == 0.8
    with pytest.raises(ConfigError, match=r"^embed\.sampling_rate \(3\) and embed\.target_tr \(0\.8 s\) are two "
                       "ways to space a window's frames"):
        EmbedOptions(sampling_rate=3, target_tr=0.8)  # the stride would be ignored
    with pytest.raises(SystemExit):
        parser.parse_args(["--encoder", "student"])  # choices from the Literal type
    with pytest.raises(SystemExit):
        parser.parse_args(["--normalization", "robust"])  # choices from option(choices=...)


def test_every_shared_setting_is_a_flag_and_an_estimator_parameter():
    shared = [f.name for f in option_fields(EncoderOptions)]
    assert shared == ["encoder", "sampling_rate", "target_tr", "pad", "normalization", "precision", "device"]
    flags = _parser(EncoderOptions)._option_string_actions
    assert all(f"--{name.replace('_', '-')}" in flags for name in shared)
    params = BrainJEPAEmbedder().get_params()
    embed_settings = {f.name for f in option_fields(EmbedOptions)} - {"seed"} | {"random_state"}
    assert embed_settings <= set(params) and params["precision"] == "auto" and params["random_state"] == 0
    with pytest.raises(TypeError, match="unexpected keyword"):
        BrainJEPAEmbedder(sampling=2)


def test_choices_and_ranges_are_checked_by_section():
    with pytest.raises(ConfigError, match=r"embed.precision must be one of \['auto', 'bf16', 'fp32'\]"):
        EmbedOptions(precision="half")
    with pytest.raises(ConfigError, match="embed.sampling_rate must be an integer >= 1"):
        EmbedOptions(sampling_rate=0)
    assert EncoderOptions(pad=True).pad


def test_any_stride_other_than_1_beside_a_target_tr_is_refused():
    """A stride of 2 is as much a second way to space the frames as 3: the target TR would silently win."""
    with pytest.raises(ConfigError, match=r"encoder\.sampling_rate \(2\) and encoder\.target_tr"):
        EncoderOptions(sampling_rate=2, target_tr=0.8)
    assert EncoderOptions(sampling_rate=1, target_tr=0.8).target_tr == 0.8


def test_the_device_setting_wins_over_the_models_device():
    """`runtime(device)`: the user's device setting first; the given device (where the model is) only without one."""
    assert EncoderOptions(device="cpu", precision="fp32").runtime("meta").device.type == "cpu"
    assert EncoderOptions(precision="fp32").runtime("meta").device.type == "meta"
