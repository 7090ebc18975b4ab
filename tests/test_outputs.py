"""Each output format's declaration (osflow.render.OUTPUTS) against its renderer and the command line:
what app.post decides from must be true of the module it names."""

from __future__ import annotations

import inspect

import pytest

from osflow import app, cli
from osflow.render import FORMATS, OUTPUTS, declaration, format_of, renderer

NAMES = [o.format for o in OUTPUTS]


@pytest.mark.parametrize("fmt", NAMES)
def test_the_module_has_what_its_declaration_says(fmt):
    out = declaration(fmt)
    module = renderer(fmt)
    assert "options" in inspect.signature(module.render).parameters
    if out.needs == "streamed":
        assert "options" in inspect.signature(module.render_parts).parameters
    if out.documents is not None:
        assert "options" in inspect.signature(getattr(module, out.documents)).parameters
    if out.mermaid_js:
        assert {"library", "hint"} <= set(inspect.signature(module.render).parameters)


def test_each_extension_names_one_format():
    extensions = [e for o in OUTPUTS for e in o.extensions]
    assert len(extensions) == len(set(extensions))
    for o in OUTPUTS:
        for e in o.extensions:
            assert format_of(f"flow{e.upper()}") == o.format
            assert app.output_format(None, f"out/flow{e}") == o.format


def test_one_format_is_the_traces_the_endpoint_sends():
    assert [o.format for o in OUTPUTS if o.traces] == ["otlp"]


def test_the_command_line_offers_the_declared_formats():
    action = next(a for a in cli.post_parser()._actions if "--format" in a.option_strings)
    assert tuple(action.choices) == FORMATS == tuple(NAMES)


def test_a_name_without_a_known_extension_is_the_timeline():
    assert format_of("capture.pcapng") is None and format_of(".md") is None
    assert app.output_format(None, "flow.pcapng") == "timeline"
